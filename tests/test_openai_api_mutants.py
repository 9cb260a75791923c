"""The chat completion routes where mutation testing found no test: what /openapi.json documents, what a
cancelled, unstored or failed run's error says, a failed agent in a completion's steps, the stream's pieces
and events with n > 1, and the runs stopped when a stream's client goes away (mid-run, a failed send, a
cancelled response)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from typing import Any

import pytest

from hyperteam.errors import ModelError
from hyperteam.serve.errors import APIError
from hyperteam.serve.manager import Outcome
from hyperteam.serve.openai_api import _raise_failure
from hyperteam.serve.store import open_store
from hyperteam.testing import FunctionModel
from tests.test_serve_hardening import _StoreWithoutUpdates, _TimedModel, chat_scope
from tests.test_serve_support import SlowModel, chain_team, client_for, make_app, wait_for, wide_team

CHAT = "/v1/chat/completions"
ASK = {"model": "one", "messages": [{"role": "user", "content": "2 + 2?"}]}


def _chunks(text: str) -> list[dict[str, Any]]:
    frames = [f.removeprefix("data: ") for f in text.split("\n\n") if f]
    return [json.loads(f) for f in frames if f != "[DONE]"]


def _contents(chunks: list[dict[str, Any]], index: int = 0) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c.get("choices") and c["choices"][0]["index"] == index and set(c["choices"][0]["delta"]) == {"content"}
    ]


# --- what /openapi.json says --------------------------------------------------------------------------------


async def test_the_openapi_description_tags_the_openai_routes_and_shows_a_request_for_a_served_team():
    app = make_app({"one": chain_team(SlowModel(), name="one", layers=1)})
    async with client_for(app) as client:
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert paths["/v1/models"]["get"]["tags"] == ["openai"]
    assert paths["/v1/models/{model_id}"]["get"]["tags"] == ["openai"]
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["tags"] == ["openai"]
    examples = chat["requestBody"]["content"]["application/json"]["examples"]
    assert examples == {
        "team": {"value": {"model": "one", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}}
    }


# --- what an error says -------------------------------------------------------------------------------------


async def test_a_chat_run_cancelled_through_the_runs_api_is_a_409_that_says_how():
    app = make_app({"one": chain_team(SlowModel(delay=0.2), name="one", layers=3)})
    manager = app.state.service.manager
    async with client_for(app) as client:
        pending = asyncio.create_task(client.post(CHAT, json=ASK))
        await wait_for(lambda: bool(manager.active_ids))
        (run_id,) = manager.active_ids
        assert (await client.post(f"/v1/runs/{run_id}/cancel")).status_code == 200
        response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 409
    assert response.json()["error"] == {
        "message": "the run was cancelled (POST /v1/runs/{id}/cancel)",
        "type": response.json()["error"]["type"],
        "param": None,
        "code": "run_cancelled",
    }


async def test_an_answer_that_could_not_be_stored_is_a_500_that_says_to_try_again():
    app = make_app(
        {"one": chain_team(SlowModel(), name="one", layers=1)}, store=_StoreWithoutUpdates(open_store(":memory:"))
    )
    async with client_for(app) as client:
        response = await client.post(CHAT, json=ASK)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("store_error", "the run finished but could not be stored; try again")


@pytest.mark.parametrize(
    ("error", "status", "code", "message"),
    [
        ({}, 500, "internal", "the team's run failed: internal"),
        (None, 500, "internal", "the team's run failed: internal"),
        ({"kind": "http_503"}, 502, "http_503", "the team's run failed: http_503"),
        ({"message": "no kind"}, 500, "internal", "the team's run failed: no kind"),
    ],
)
def test_a_failed_run_whose_error_says_little_still_gets_a_code_and_a_message(
    error: dict[str, Any] | None, status: int, code: str, message: str
):
    # Every failure the manager records names its kind and message; this is the answer if one ever does not.
    with pytest.raises(APIError) as caught:
        _raise_failure([Outcome("succeeded"), Outcome("failed", error=error)])
    body = caught.value.body()["error"]
    assert (caught.value.status_code, body["code"], body["message"]) == (status, code, message)


# --- a completion's steps -----------------------------------------------------------------------------------


async def test_a_failed_agent_shows_its_error_in_the_completions_steps():
    calls = itertools.count()

    def reply(request: object) -> str:
        if next(calls) == 0:  # one of the three voters fails; the other two still agree
            raise ModelError("upstream down", kind="http_503", status=503)
        return "#### 4"

    app = make_app({"wide": wide_team(FunctionModel(reply))})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "model": "wide"})
        assert response.status_code == 200
        run = response.json()["hyperteam"]["runs"][0]
        stored = (await client.get(f"/v1/runs/{run['run_id']}")).json()
    steps = [s for s in run["trace"] if s["kind"] == "agent"]
    failed = [s for s in steps if s["error"] is not None]
    assert len(steps) == 3 and len(failed) == 1 and failed[0]["answer"] is None
    assert "upstream down" in json.dumps(failed[0]["error"])
    assert [s["error"] for s in steps] == [e["error"] for e in stored["trace"] if e["kind"] == "agent"]


async def test_wall_s_is_the_stored_run_time_to_the_microsecond():
    app = make_app({"one": chain_team(SlowModel(), name="one", layers=1)})
    async with client_for(app) as client:
        runs = (await client.post(CHAT, json={**ASK, "n": 4})).json()["hyperteam"]["runs"]
        stored = [(await client.get(f"/v1/runs/{r['run_id']}")).json()["result"]["wall_s"] for r in runs]
    assert [r["wall_s"] for r in runs] == stored
    assert all(r["wall_s"] == round(r["wall_s"], 6) > 0 for r in runs)


# --- the stream ---------------------------------------------------------------------------------------------


async def test_a_streamed_text_is_cut_into_pieces_of_at_most_64_characters():
    text = "abcdefg " * 8 + "4"  # 65 characters: one over the piece size
    app = make_app({"one": chain_team(FunctionModel(lambda request: text), name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "stream": True})
    assert _contents(_chunks(response.text)) == ["abcdefg " * 8, "4"]


async def test_an_empty_answer_streams_no_content_chunk():
    app = make_app({"one": chain_team(FunctionModel(lambda request: "XY #### 4"), name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "stream": True, "stop": ["XY"]})
    chunks = _chunks(response.text)
    assert response.text.endswith("data: [DONE]\n\n")
    assert _contents(chunks) == []
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_answers_plain_and_streamed_log_no_error(caplog: pytest.LogCaptureFixture):
    # Each answer stops its disconnect watcher at the end; stopping it must not log an error.
    app = make_app({"one": chain_team(SlowModel(), name="one", layers=1)})
    with caplog.at_level(logging.WARNING):
        async with client_for(app) as client:
            for stream in (False, True):
                assert (await client.post(CHAT, json={**ASK, "stream": stream})).status_code == 200
                for _ in range(3):
                    await asyncio.sleep(0)  # the watcher's done callback runs on a later loop iteration
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_with_n_2_every_runs_events_are_streamed_even_after_the_other_run_ended():
    calls = itertools.count()

    async def reply(request: object) -> str:
        if next(calls) == 1:  # the second run's first call is slow: the first run ends long before it
            await asyncio.sleep(0.3)
        return "#### 4"

    app = make_app({"one": chain_team(FunctionModel(reply), name="one", layers=2)})
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**ASK, "n": 2, "stream": True})
        chunks = _chunks(response.text)
        finals = [c["hyperteam"]["run_id"] for c in chunks if "hyperteam" in c]
        stored = [(await client.get(f"/v1/runs/{run_id}")).json() for run_id in finals]
    assert len(finals) == 2
    for i, (run_id, run) in enumerate(zip(finals, stored, strict=True)):
        events = [c["hyperteam_event"] for c in chunks if "hyperteam_event" in c and c["choices"][0]["index"] == i]
        assert all(e["run_id"] == run_id for e in events)
        trace = [(e["kind"], e["layer"], e["agent"]) for e in events if e["type"] == "trace"]
        assert trace == [(e["kind"], e["layer"], e["agent"]) for e in run["trace"]] and len(trace) >= 2
        assert events[-1]["type"] == "status" and events[-1]["status"] == "succeeded"


# --- a stream's client that goes away -----------------------------------------------------------------------


def _start_stream(app: Any, on_event_sent: Any) -> asyncio.Task[None]:
    """Starts a streamed chat completion of ``chain8`` straight on the ASGI app (spec 2.4). The first time
    a chunk carrying an agent's event is sent, ``on_event_sent(task, gone)`` is called: it may raise (as a
    failed send does), cancel ``task`` or set ``gone`` (the client then receives a disconnect)."""
    raw = json.dumps({"model": "chain8", "messages": ASK["messages"], "stream": True}).encode()
    received: list[None] = []
    gone, seen = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not received:
            received.append(None)
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if not seen.is_set() and b'"kind": "agent"' in message.get("body", b""):
            seen.set()
            on_event_sent(task, gone)

    task = asyncio.create_task(app(chat_scope("2.4"), receive, send))
    return task


@pytest.mark.parametrize("how", ["disconnect", "failed_send", "cancelled"])
async def test_a_stream_whose_client_goes_away_mid_run_stops_the_run_before_its_next_call(how: str):
    # The client goes away once the first agent's event reached it, while the second of eight calls runs
    # (and the stream waits for that call's event): no further call may start, as the module promises.
    model = _TimedModel(delay=0.15)
    store = open_store(":memory:")
    app = make_app({"chain8": chain_team(model, name="chain8", layers=8)}, store=store)
    left: list[float] = []

    def leave(task: asyncio.Task[None], gone: asyncio.Event) -> None:
        left.append(time.monotonic())
        if how == "disconnect":
            gone.set()
        elif how == "failed_send":
            raise OSError("the client's connection is gone")  # what ASGI servers of spec 2.4 raise
        else:
            task.cancel()

    async with client_for(app) as client:
        task = _start_stream(app, leave)
        await asyncio.wait([task], timeout=5)
        assert task.done() and left
        await asyncio.sleep(0.5)  # time for several more calls, were the run still going
        assert 2 <= len(model.started) < 8 and all(t <= left[0] for t in model.started), (left, model.started)
        ((run_id,),) = store._db.execute("SELECT id FROM runs").fetchall()
        run = (await client.get(f"/v1/runs/{run_id}")).json()
    assert (run["status"], run["error"]["kind"]) == ("cancelled", "client_disconnected")
