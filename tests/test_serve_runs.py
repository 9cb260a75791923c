"""The runs API: create (idempotently), read, follow events, cancel for good, resume, shut down."""

from __future__ import annotations

import asyncio
import json

import httpx

from hyperteam.serve.store import open_store
from tests.test_serve_support import OTHER_KEY, SlowModel, auth, chain_team, client_for, make_app, wait_for


def sse_events(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


async def _finished(client: httpx.AsyncClient, run_id: str, key: str | None = None) -> dict:
    headers = auth(key) if key else None
    for _ in range(500):
        run = (await client.get(f"/v1/runs/{run_id}", headers=headers)).json()
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} did not finish")


async def test_a_run_is_created_read_and_followed_to_its_end():
    model = SlowModel(delay=0.01)
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        created = await client.post("/v1/runs", json={"team": "chain3", "input": "What is 2 + 2?"})
        assert created.status_code == 201
        run_id = created.json()["id"]
        assert created.json()["status"] == "queued" and created.json()["input"] == {"input": "What is 2 + 2?"}
        stream = await client.get(f"/v1/runs/{run_id}/events")
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream.text)
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["data"] == {"type": "status", "status": "running"}
        assert [e["data"]["agent"] for e in events if e["data"].get("kind") == "agent"] == ["a0", "a1", "a2"]
        assert events[-1]["data"] == {"type": "status", "status": "succeeded", "answer": "4"}
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        assert run["status"] == "succeeded" and run["result"]["answer"] == "4"
        assert run["usage"]["calls"] == 3 and len(run["trace"]) == 6  # three agents, three fusions
        # Last-Event-ID resumes after the events already seen.
        tail = await client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(events[-3]["id"])})
        assert [e["id"] for e in sse_events(tail.text)] == [events[-2]["id"], events[-1]["id"]]


async def test_messages_are_a_valid_input_too():
    model = SlowModel()
    app = make_app({"one": chain_team(model, name="one", layers=1)})
    async with client_for(app) as client:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]
        created = await client.post("/v1/runs", json={"team": "one", "input": messages})
        run = await _finished(client, created.json()["id"])
    assert run["status"] == "succeeded" and run["input"] == {"messages": messages}
    assert "[system] Be brief." in model.requests[0].messages[-1]["content"]


async def test_ten_concurrent_requests_with_one_idempotency_key_make_one_run():
    model = SlowModel(delay=0.01)
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        body = {"team": "chain3", "input": "What is 2 + 2?"}
        headers = {"Idempotency-Key": "order-42"}
        responses = await asyncio.gather(*(client.post("/v1/runs", json=body, headers=headers) for _ in range(10)))
        assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        await _finished(client, responses[0].json()["id"])
        # The same key from another API key is another run; reusing it for another request is a conflict.
        other = await client.post("/v1/runs", json=body, headers={**headers, **auth(OTHER_KEY)})
        assert other.status_code == 201 and other.json()["id"] != responses[0].json()["id"]
        await _finished(client, other.json()["id"], OTHER_KEY)
        clash = await client.post("/v1/runs", json={**body, "input": "Something else"}, headers=headers)
        assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    assert len(model.requests) == 6  # one run per key: 3 calls each


async def test_after_cancel_answers_no_call_of_the_run_reaches_the_model():
    model = SlowModel(delay=0.1)
    app = make_app({"chain3": chain_team(model, layers=10)})
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2 + 2?"})).json()["id"]
        await wait_for(lambda: len(model.requests) >= 2)
        cancelled = await client.post(f"/v1/runs/{run_id}/cancel")
        calls_at_ack = len(model.requests)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        await asyncio.sleep(0.5)  # five more calls' worth of time
        assert len(model.requests) == calls_at_ack < 10
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        assert run["status"] == "cancelled" and run["usage"]["calls"] == calls_at_ack - 1  # the last was cut off
        events = sse_events((await client.get(f"/v1/runs/{run_id}/events")).text)
        assert events[-1]["data"] == {"type": "status", "status": "cancelled"}
        again = await client.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "run_finished"


async def test_a_run_stopped_before_it_starts_makes_no_call():
    model = SlowModel()
    store = open_store(":memory:")
    app = make_app({"chain3": chain_team(model)}, store=store)
    manager = app.state.service.manager
    async with client_for(app):
        record, task = await manager.submit("anonymous", "chain3", {"input": "2 + 2?"})
        outcome = await manager.stop(record.id)  # the task has not had a chance to run yet
        assert outcome.status == "cancelled" and task.done()
    assert model.requests == []
    assert (await store.get_run(record.id)).status == "cancelled"


async def test_runs_are_visible_only_to_the_key_that_created_them():
    app = make_app({"chain3": chain_team(SlowModel())})
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2 + 2?"})).json()["id"]
        other = auth(OTHER_KEY)
        for method, path in [("GET", ""), ("GET", "/events"), ("POST", "/cancel"), ("POST", "/resume")]:
            response = await client.request(method, f"/v1/runs/{run_id}{path}", headers=other)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "run_not_found"
        assert (await _finished(client, run_id))["status"] == "succeeded"


async def test_unknown_team_and_empty_input_are_refused_before_any_work():
    model = SlowModel()
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        missing = await client.post("/v1/runs", json={"team": "nope", "input": "hi"})
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "team"
        empty = await client.post("/v1/runs", json={"team": "chain3", "input": " "})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
        bad_id = await client.get("/v1/runs/run_0/events", headers={"Last-Event-ID": "x"})
        assert bad_id.status_code == 404
    assert model.requests == []


async def test_shutdown_interrupts_long_runs_and_a_restart_resumes_them(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    slow = SlowModel(delay=0.2)
    store = open_store(path)
    app = make_app({"chain3": chain_team(slow)}, store=store, shutdown_grace_s=0.05)
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2 + 2?"})).json()["id"]
        await wait_for(lambda: len(slow.requests) >= 1)
    calls = len(slow.requests)
    assert (await store.get_run(run_id)).status == "interrupted"
    await asyncio.sleep(0.3)
    assert len(slow.requests) == calls  # shutdown stopped it for good
    await store.close()

    fast = SlowModel()
    store = open_store(path)
    app = make_app({"chain3": chain_team(fast)}, store=store)
    async with client_for(app) as client:
        assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "interrupted"
        resumed = await client.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
        run = await _finished(client, run_id)
        assert run["status"] == "succeeded" and len(fast.requests) == 3
        statuses = [
            e["data"]["status"]
            for e in sse_events((await client.get(f"/v1/runs/{run_id}/events")).text)
            if e["event"] == "status"
        ]
        assert statuses == ["running", "interrupted", "running", "succeeded"]
        again = await client.post(f"/v1/runs/{run_id}/resume")
        assert again.status_code == 409
    await store.close()


async def test_in_flight_runs_finish_within_the_grace_period():
    model = SlowModel(delay=0.02)
    store = open_store(":memory:")
    app = make_app({"chain3": chain_team(model)}, store=store, shutdown_grace_s=5)
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2 + 2?"})).json()["id"]
    assert (await store.get_run(run_id)).status == "succeeded"
    assert len(model.requests) == 3


async def test_while_stopping_health_is_503_and_new_runs_are_refused():
    model = SlowModel(delay=0.05)
    app = make_app({"chain3": chain_team(model)}, shutdown_grace_s=5)
    manager = app.state.service.manager
    async with client_for(app) as client:
        run_id = (await client.post("/v1/runs", json={"team": "chain3", "input": "2 + 2?"})).json()["id"]
        stopping = asyncio.create_task(manager.shutdown(5))
        await asyncio.sleep(0)
        assert (await client.get("/health")).status_code == 503
        refused = await client.post("/v1/runs", json={"team": "chain3", "input": "3 + 3?"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        await stopping
        assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "succeeded"  # within the grace
