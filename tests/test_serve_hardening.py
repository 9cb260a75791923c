"""No request can damage another's data, and a gone client costs nothing (in process).

Bad values are refused before any work, a store write that fails fails alone,
a client that disconnects cancels its chat runs, an answer is stored before it
is sent, and errors neither lack a code nor echo what was sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from typing import Any

import pytest

from hyperteam.serve.manager import RunManager
from hyperteam.serve.records import RunRecord, WriteFailure
from hyperteam.serve.store import open_store
from hyperteam.testing import FunctionModel
from tests.test_run_store import opener, postgres_url, store_url  # noqa: F401  (fixtures: SQLite and PostgreSQL)
from tests.test_serve_support import KEY, OTHER_KEY, SlowModel, auth, chain_team, client_for, make_app

CHAT = "/v1/chat/completions"
Q = [{"role": "user", "content": "What is 2 + 2?"}]


def _raw(body: dict[str, Any] | str) -> dict[str, Any]:
    # json.dumps escapes lone surrogates as \udXXX and writes big integers whole: what an attacker sends.
    text = body if isinstance(body, str) else json.dumps(body)
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


# (body, param the 400 names, code)
POISON = [
    ({"model": "chain3", "messages": Q, "seed": 1180591620717411303424}, "seed", "integer_out_of_range"),
    ({"model": "chain3", "messages": Q, "seed": -(2**63) - 1}, "seed", "integer_out_of_range"),
    ({"model": "chain3", "messages": Q, "max_tokens": 2**64}, "max_tokens", "integer_out_of_range"),
    (
        {"model": "chain3", "messages": [{"role": "user", "content": "\ud800 2+2?"}]},
        "messages[0].content",
        "invalid_unicode",
    ),
    (
        {"model": "chain3", "messages": [{"role": "user", "content": [{"type": "text", "text": "2+2\udfff"}]}]},
        "messages[0].content[0].text",
        "invalid_unicode",
    ),
    ({"model": "chain3", "messages": Q, "user": "\udc00"}, "user", "invalid_unicode"),
    ({"model": "chain3", "messages": Q, "frobnicate": {"x": [1, 2**65]}}, "frobnicate.x[1]", "integer_out_of_range"),
    (
        '{"model": "chain3", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        "temperature",
        "invalid_number",
    ),
    (
        '{"model": "chain3", "messages": [{"role": "user", "content": "hi"}], "seed": ' + "9" * 5000 + "}",
        "seed",
        "integer_out_of_range",
    ),
]


@pytest.mark.parametrize(("body", "param", "code"), POISON)
async def test_values_the_service_cannot_store_or_send_are_a_400_naming_the_field(body, param, code):
    model = SlowModel()
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        response = await client.post(CHAT, **_raw(body))
        runs = await client.post("/v1/runs", **_raw(json.dumps({"team": "chain3", "input": "2+2?", "x": 2**70})))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert runs.status_code == 400 and runs.json()["error"]["code"] == "integer_out_of_range"
    assert model.requests == []


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"[" * 5000 + b"]" * 5000, "nesting_too_deep"), (b'{"model": "\xff"}', "invalid_utf8")],
)
async def test_deep_nesting_and_invalid_utf8_are_400s_with_a_code(content, code):
    app = make_app({"chain3": chain_team(SlowModel())})
    async with client_for(app) as client:
        response = await client.post(CHAT, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == code


async def test_poisoned_requests_among_good_ones_leave_every_good_run_whole(tmp_path, caplog):
    """The issue's scenario: 20 poisoned requests among 60 good chat completions and 30 runs of another key."""
    model = SlowModel(delay=0.01)
    app = make_app({"chain3": chain_team(model)}, store=open_store(str(tmp_path / "runs.sqlite")))
    poison = [POISON[i % len(POISON)][0] for i in range(20)]
    with caplog.at_level(logging.INFO):
        async with client_for(app) as client:
            good = [client.post(CHAT, json={"model": "chain3", "messages": Q}) for _ in range(60)]
            bad = [client.post(CHAT, **_raw(body)) for body in poison]
            other = [
                client.post("/v1/runs", json={"team": "chain3", "input": f"What is {i} + 2?"}, headers=auth(OTHER_KEY))
                for i in range(30)
            ]
            responses = await asyncio.gather(*good, *bad, *other)
            good_r, bad_r, other_r = responses[:60], responses[60:80], responses[80:]
            assert [r.status_code for r in bad_r] == [400] * 20
            assert all(r.json()["error"]["code"] and r.json()["error"]["param"] for r in bad_r)
            assert [r.status_code for r in good_r] == [200] * 60
            assert [r.status_code for r in other_r] == [201] * 30
            for r in good_r:
                run = (await client.get(f"/v1/runs/{r.json()['hyperteam']['run_id']}")).json()
                assert run["status"] == "succeeded"
                assert [s["agent"] for s in run["trace"] if s["kind"] == "agent"] == ["a0", "a1", "a2"]
            for r in other_r:
                run_id = r.json()["id"]
                for _ in range(200):
                    run = (await client.get(f"/v1/runs/{run_id}", headers=auth(OTHER_KEY))).json()
                    if run["status"] == "succeeded":
                        break
                    await asyncio.sleep(0.02)
                assert run["status"] == "succeeded" and len([s for s in run["trace"] if s["kind"] == "agent"]) == 3
            metrics = (await client.get("/metrics")).text
    for kind in ("run", "event", "update"):
        assert f'hyperteam_store_write_failures_total{{kind="{kind}"}} 0.0' in metrics
    assert not [r for r in caplog.records if "could not store" in r.getMessage()]
    assert len(model.requests) == 3 * 90


# --- a failing store write fails alone -------------------------------------------------------------------


async def test_a_record_the_store_cannot_take_is_skipped_alone_on_both_stores(opener):  # noqa: F811
    store = await opener()
    good, bad = RunRecord("run_good", "t", "o", {"q": "ok"}), RunRecord("run_bad", "t", "o", {"q": 2**70})
    failures: list[WriteFailure] = []
    events = [("run_good", {"i": 1}), ("run_good", {"bad": "\ud800"}), ("run_bad", {"i": 1}), ("run_good", {"i": 2})]
    updates = [("run_good", {"status": "succeeded", "result": {"answer": "4"}}), ("run_bad", {"status": "failed"})]
    seqs = await store.write(creates=[bad, good], events=events, updates=updates, failures=failures)
    assert seqs == [1, None, None, 2]
    assert [(f.kind, f.run_id) for f in failures] == [
        ("run", "run_bad"),
        ("event", "run_good"),
        ("event", "run_bad"),
        ("update", "run_bad"),
    ]
    assert "\ud800" not in repr(failures) and "2**70" not in repr(failures)
    assert await store.events("run_good") == [(1, {"i": 1}), (2, {"i": 2})]
    assert (await store.get_run("run_good")).status == "succeeded"
    assert await store.get_run("run_bad") is None


async def test_the_event_log_isolates_a_bad_record_and_counts_it(tmp_path, caplog):
    model = SlowModel()
    app = make_app({"chain3": chain_team(model)}, store=open_store(str(tmp_path / "runs.sqlite")))
    manager: RunManager = app.state.service.manager
    with caplog.at_level(logging.ERROR):
        async with client_for(app) as client:
            # A record no store can encode, queued with the same batch as good requests' writes.
            manager._events.create(RunRecord("run_poisoned", "chain3", "o", {"seed": 2**70}, created_at=1.0))
            responses = await asyncio.gather(
                *(client.post(CHAT, json={"model": "chain3", "messages": Q}) for _ in range(8))
            )
            assert [r.status_code for r in responses] == [200] * 8
            for r in responses:
                assert (await client.get(f"/v1/runs/{r.json()['hyperteam']['run_id']}")).json()["status"] == "succeeded"
            metrics = (await client.get("/metrics")).text
    assert 'hyperteam_store_write_failures_total{kind="run"} 1.0' in metrics
    assert not manager.stored("run_poisoned")
    messages = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"could not store 1 of \d+ write\(s\) \(TypeError\)", m) for m in messages), messages


class _StoreWithoutUpdates:
    """A SQLite store that cannot store status updates (as a full disk would): every one is a failure."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, *, creates=(), events=(), updates=(), failures=None):
        if failures is not None:
            failures.extend(WriteFailure("update", run_id, "OSError") for run_id, _ in updates)
        return await self._inner.write(creates=creates, events=events, failures=failures)


async def test_an_answer_whose_run_could_not_be_stored_is_not_a_200():
    app = make_app({"chain3": chain_team(SlowModel())}, store=_StoreWithoutUpdates(open_store(":memory:")))
    async with client_for(app) as client:
        response = await client.post(CHAT, json={"model": "chain3", "messages": Q})
    assert response.status_code == 500 and response.json()["error"]["code"] == "store_error"


class _SlowStore:
    """A SQLite store whose batched writes take 50 ms: an answer sent before its write would be seen."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await self._inner.write(**kwargs)


async def test_an_answer_is_stored_before_it_is_sent(tmp_path):
    path = tmp_path / "runs.sqlite"
    app = make_app({"chain3": chain_team(SlowModel())}, store=_SlowStore(open_store(str(path))))
    async with client_for(app) as client:
        for stream in (False, True):
            response = await client.post(CHAT, json={"model": "chain3", "messages": Q, "stream": stream})
            assert response.status_code == 200
            run_id = "run_" + re.search(r'"id": ?"chatcmpl-([0-9a-f]+)"', response.text).group(1)
            # Read by another connection, as a restarted service would: no sync() with the writer.
            with sqlite3.connect(path) as db:
                (status,) = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                (events,) = db.execute("SELECT count(*) FROM run_events WHERE run_id = ?", (run_id,)).fetchone()
            assert status == "succeeded" and events == 1 + 6 + 1  # running, 3 layers of agent + fusion, final


# --- a client that goes away cancels its chat runs -------------------------------------------------------


class _TimedModel(FunctionModel):
    """Takes ``delay`` a call and records when each call started."""

    def __init__(self, delay: float) -> None:
        self.started: list[float] = []

        async def answer(request: Any) -> str:
            self.started.append(time.monotonic())
            await asyncio.sleep(delay)
            return "Adding up.\n#### 4"

        super().__init__(answer, name="timed")


def chat_scope(spec_version: str) -> dict:
    """The ASGI scope of a keyed POST to the chat completions route (ASGI ``spec_version`` as given)."""
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _leave(app: Any, body: dict[str, Any], *, after_s: float | None = None) -> tuple[float, list[dict]]:
    """Sends a chat completion straight to the ASGI app and disconnects after ``after_s`` seconds, or
    after the first body chunk (a stream); returns when the client left and what it was sent."""
    raw, sent, gone = json.dumps(body).encode(), [], asyncio.Event()
    first = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            sent.append(None)
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first.set()

    task = asyncio.create_task(app(chat_scope("2.3"), receive, send))
    if after_s is None:
        await asyncio.wait_for(first.wait(), 5)
    else:
        await asyncio.sleep(after_s)
    left = time.monotonic()
    gone.set()
    await asyncio.wait_for(task, 5)
    return left, messages


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_disconnects_cancels_its_chat_run(stream):
    model = _TimedModel(delay=0.15)
    store = open_store(":memory:")
    app = make_app({"chain8": chain_team(model, name="chain8", layers=8)}, store=store)
    async with client_for(app) as client:
        body = {"model": "chain8", "messages": Q, "stream": stream}
        left, messages = await _leave(app, body, after_s=None if stream else 0.4)
        await asyncio.sleep(0.6)  # time for several more calls, were the run still going
        assert model.started and all(t <= left for t in model.started), (left, model.started)
        assert len(model.started) < 8
        ((run_id,),) = store._db.execute("SELECT id FROM runs").fetchall()
        run = (await client.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "cancelled"
    assert run["error"]["kind"] == "client_disconnected"
    if stream:
        assert messages[0]["status"] == 200


async def test_runs_created_through_the_runs_api_outlive_their_request():
    model = _TimedModel(delay=0.02)
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2+2?"})).json()["id"]
    # The client (and its connection) is gone; the lifespan's shutdown lets the run finish.
    async with client_for(app) as client:
        assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "succeeded"
    assert len(model.started) == 3


# --- what errors say, and what they do not ----------------------------------------------------------------


async def test_404s_do_not_echo_what_was_sent():
    app = make_app({"chain3": chain_team(SlowModel())})
    long_id = "run_" + "x" * 5000
    async with client_for(app) as client:
        responses = [
            await client.get(f"/v1/runs/{long_id}"),
            await client.get(f"/v1/runs/{long_id}/events"),
            await client.get("/v1/models/secret-model-name"),
            await client.post(CHAT, json={"model": "secret-model-name", "messages": Q}),
            await client.post("/v1/runs", json={"team": "secret-model-name", "input": "hi"}),
            await client.get("/v1/secret-route-name"),
        ]
    for response in responses:
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] and "secret" not in response.text and "xxxxx" not in response.text


async def test_every_error_body_has_a_code():
    app = make_app({"chain3": chain_team(SlowModel())})
    async with client_for(app) as client:
        responses = [
            await client.post(CHAT, content=b"{", headers={"Content-Type": "application/json"}),
            await client.post(CHAT, json={"model": "chain3", "messages": Q, "n": 0}),
            await client.post(CHAT, json={"model": "chain3", "messages": [{"role": "user", "content": " "}]}),
            await client.delete("/v1/models"),
            await client.get("/v1/runs/x", headers={"Authorization": "Bearer nope"}),
        ]
    assert [r.status_code for r in responses] == [422, 422, 400, 405, 401]
    assert all(isinstance(r.json()["error"]["code"], str) and r.json()["error"]["code"] for r in responses)


@pytest.mark.parametrize("value", ["99999999999999999999999", "abc", "-1", "1.5", ""])
async def test_last_event_id_garbage_is_a_400(value):
    app = make_app({"chain3": chain_team(SlowModel())})
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2+2?"})).json()["id"]
        response = await client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": value})
        ok = await client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "2"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": "Last-Event-ID must be the id of an event of this stream (digits)",
        "type": "invalid_request_error",
        "param": "Last-Event-ID",
        "code": "invalid_last_event_id",
    }
    assert ok.status_code == 200 and "id: 3\n" in ok.text and "id: 2\n" not in ok.text


async def test_openai_user_is_accepted_recorded_and_not_logged(caplog):
    model = SlowModel()
    app = make_app({"chain3": chain_team(model)})
    with caplog.at_level(logging.DEBUG):
        async with client_for(app) as client:
            response = await client.post(CHAT, json={"model": "chain3", "messages": Q, "user": "user-canary-7781"})
            assert response.status_code == 200, response.text
            run = (await client.get(f"/v1/runs/{response.json()['hyperteam']['run_id']}")).json()
    assert run["input"]["user"] == "user-canary-7781"
    assert all("user-canary-7781" not in r.getMessage() for r in caplog.records)
    assert all("user-canary-7781" not in json.dumps(r.messages) for r in model.requests)


@pytest.mark.parametrize(("n", "status"), [(2.0, 200), (3, 200), (4, 400)])
async def test_n_is_bounded_as_the_schema_says(n, status):
    from hyperteam.serve.limits import Limits

    app = make_app({"chain3": chain_team(SlowModel())}, limits=Limits(max_fanout=9))
    schema = app.openapi()["components"]["schemas"]["ChatCompletionRequest"]["properties"]["n"]["anyOf"][0]
    assert schema == {"type": "integer", "minimum": 1, "maximum": 3}
    async with client_for(app) as client:
        response = await client.post(CHAT, json={"model": "chain3", "messages": Q, "n": n})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["code"] == "fanout_limit_exceeded"
