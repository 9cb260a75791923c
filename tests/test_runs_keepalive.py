"""An idle event stream (GET /v1/runs/{id}/events) stays open and gets keep-alive comments.

The run manager yields a heartbeat on every idle poll (``poll_s``, 1 s by default); the
stream sends a ``: keep-alive`` comment every ``KEEPALIVE_POLLS`` of them. The tests poll
every few milliseconds instead of every second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from hyperteam.serve import runs
from hyperteam.testing import FunctionModel
from tests.test_serve_runs import _finished, sse_events
from tests.test_serve_support import chain_team, client_for, make_app

KEEPALIVE = ": keep-alive\n\n"


def _event(seq: int, event: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"


async def test_an_idle_stream_stays_open_gets_a_keep_alive_and_then_the_later_events():
    release = asyncio.Event()
    heartbeats = 0

    async def answer(request: Any) -> str:
        await release.wait()  # the run stays running, its stream idle, until released
        return "Adding up.\n#### 4"

    app = make_app({"chain1": chain_team(FunctionModel(answer, name="held"), name="chain1", layers=1)})
    manager = app.state.service.manager
    manager.poll_s = 0.005
    real_follow = manager.follow

    async def counting_follow(run_id: str, *, after: int = 0) -> AsyncIterator[tuple[int, dict | None]]:
        # The real follow, releasing the model after a number of idle polls (not of seconds).
        nonlocal heartbeats
        async for seq, event in real_follow(run_id, after=after):
            if event is None:
                heartbeats += 1
                if heartbeats == 2 * runs.KEEPALIVE_POLLS + 3:
                    release.set()
            yield seq, event

    manager.follow = counting_follow
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain1", "input": "What is 2 + 2?"})).json()["id"]
        stream = await asyncio.wait_for(client.get(f"/v1/runs/{run_id}/events"), 30)
        assert stream.status_code == 200
        text = stream.text
        assert text.count(KEEPALIVE) >= 2
        events = sse_events(text)
        # The stream went on past its idle polls and their comments to the run's end.
        assert events[0]["data"] == {"type": "status", "status": "running"}
        assert events[-1]["data"] == {"type": "status", "status": "succeeded", "answer": "4"}
        assert text.index(KEEPALIVE) < text.index('"succeeded"')
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert (await _finished(client, run_id))["status"] == "succeeded"


async def test_a_keep_alive_comes_after_every_fifteen_idle_polls_counted_from_the_last_event():
    assert runs.KEEPALIVE_POLLS == 15  # 15 s of silence at the manager's default 1 s poll
    first = {"type": "status", "status": "running"}
    trace = {"type": "trace", "kind": "agent", "agent": "a0"}
    fusion = {"type": "trace", "kind": "fusion", "layer": "step0"}
    last = {"type": "status", "status": "succeeded", "answer": "4"}
    script: list[tuple[int, dict | None]] = [
        *[(0, None)] * 14,  # 14 idle polls from the start: no comment yet
        (1, first),
        *[(0, None)] * 15,  # a comment after the 15th idle poll
        (2, trace),
        *[(0, None)] * 14,  # 14 idle polls since the last event: no comment yet
        (3, fusion),
        *[(0, None)] * 31,  # two comments (after the 15th and the 30th), not three
        (4, last),
    ]

    async def scripted_follow(run_id: str, *, after: int = 0) -> AsyncIterator[tuple[int, dict | None]]:
        for item in script:
            yield item

    app = make_app({"chain1": chain_team(FunctionModel(lambda r: "#### 4", name="quick"), name="chain1", layers=1)})
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain1", "input": "What is 2 + 2?"})).json()["id"]
        await _finished(client, run_id)
        app.state.service.manager.follow = scripted_follow
        stream = await client.get(f"/v1/runs/{run_id}/events")
    assert stream.status_code == 200
    expected = _event(1, first) + KEEPALIVE + _event(2, trace) + _event(3, fusion) + 2 * KEEPALIVE + _event(4, last)
    assert stream.text == expected
