"""Keys, limits and error bodies: 401 everywhere protected, the canary key nowhere, 413/422/400/429."""

from __future__ import annotations

import logging
import re
import sqlite3

import httpx
import pytest
from fastapi.routing import APIRoute

from hyperteam.serve.auth import PUBLIC_PATHS
from hyperteam.serve.limits import Limits, max_calls
from hyperteam.serve.store import open_store
from hyperteam.topologies import load_team
from tests.test_serve_support import KEY, SlowModel, chain_team, client_for, make_app, wide_team

CHAT = "/v1/chat/completions"


def _error_shape(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def test_every_protected_route_needs_a_valid_key():
    model = SlowModel()
    app = make_app({"wide": wide_team(model)})
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path not in PUBLIC_PATHS]
    assert {r.path for r in routes} >= {"/v1/models", CHAT, "/v1/runs", "/v1/runs/{run_id}", "/metrics"}
    async with client_for(app, key=None) as client:
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "run_x", route.path)
            for method in route.methods:
                for headers in (
                    {},
                    {"Authorization": "Bearer wrong"},
                    {"Authorization": KEY},
                    {"Authorization": "Basic x"},
                ):
                    response = await client.request(method, path, headers=headers, json={})
                    assert response.status_code == 401, (method, path, headers)
                    error = _error_shape(response)
                    assert error["code"] == "invalid_api_key" and response.headers["www-authenticate"] == "Bearer"
        for path in ("/health", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200, path
    assert model.requests == []


async def test_an_open_service_warns_and_lets_everyone_in(caplog):
    app = make_app({"wide": wide_team(SlowModel())}, api_keys=None)
    with caplog.at_level(logging.WARNING):
        async with client_for(app, key=None) as client:
            assert (await client.get("/v1/models")).status_code == 200
    assert any("OPEN" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_the_canary_key_appears_in_no_log_store_body_trace_or_metric(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "runs.sqlite"
    store = open_store(str(path))
    model = SlowModel()
    app = make_app({"wide": wide_team(model), "single": load_team("single")}, store=store, rate_limit=1000.0)
    bodies = []
    async with client_for(app) as client:
        requests = [
            ("GET", "/v1/models", None),
            ("POST", CHAT, {"model": "wide", "messages": [{"role": "user", "content": "2 + 2?"}]}),
            ("POST", CHAT, {"model": "single", "messages": [{"role": "user", "content": "2 + 2?"}], "stream": True}),
            ("POST", CHAT, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            ("POST", CHAT, {"model": "wide", "messages": [{"role": "user", "content": "hi"}], "top_k": 3}),
            ("POST", CHAT, {"model": "wide"}),
            ("POST", "/v1/runs", {"team": "wide", "input": "2 + 2?"}),
            ("GET", "/v1/runs/run_missing", None),
            ("GET", "/metrics", None),
        ]
        for method, url, body in requests:
            bodies.append((await client.request(method, url, json=body)).text)
        run_id = (await client.post("/v1/runs", json={"team": "wide", "input": "3 + 3?"})).json()["id"]
        bodies.append((await client.get(f"/v1/runs/{run_id}/events")).text)
        bodies.append((await client.get(f"/v1/runs/{run_id}")).text)
        bodies.append((await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}x"})).text)
        bodies.append((await client.get("/metrics")).text)
    await store.close()
    assert len(model.requests) >= 3
    for text in bodies:
        assert KEY not in text
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY not in str(record.__dict__)
    assert KEY not in caplog.text
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in db.execute(f"SELECT * FROM {table}"):
                assert KEY not in repr(row), table
    assert KEY.encode() not in path.read_bytes()
    for request in model.requests:  # nor does any prompt sent to the team's model
        assert KEY not in repr(request)


async def test_no_request_content_is_logged_at_info(caplog):
    caplog.set_level(logging.INFO)
    app = make_app({"wide": wide_team(SlowModel())})
    secret_question = "How many purple elephants fit in a Mini?"
    async with client_for(app) as client:
        body = {"model": "wide", "messages": [{"role": "user", "content": secret_question}]}
        assert (await client.post(CHAT, json=body)).status_code == 200
    assert caplog.records  # the request log is there
    assert "purple elephants" not in caplog.text
    assert any(getattr(r, "route", None) == CHAT and getattr(r, "status", None) == 200 for r in caplog.records)


async def test_rate_limit_gives_429_with_retry_after_per_key():
    from tests.test_serve_support import OTHER_KEY, auth

    app = make_app({"wide": wide_team(SlowModel())}, rate_limit=2.0)
    async with client_for(app) as client:
        statuses = [(await client.get("/v1/models")).status_code for _ in range(4)]
        assert statuses[:2] == [200, 200] and statuses[-1] == 429
        limited = await client.get("/v1/models")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert _error_shape(limited)["code"] == "rate_limit_exceeded"
        assert (await client.get("/v1/models", headers=auth(OTHER_KEY))).status_code == 200  # its own bucket
        assert (await client.get("/health")).status_code == 200


async def test_oversize_bodies_are_413_by_length_and_by_stream():
    model = SlowModel()
    app = make_app({"wide": wide_team(model)}, limits=Limits(max_body_bytes=2000))
    big = {"model": "wide", "messages": [{"role": "user", "content": "x" * 5000}]}
    async with client_for(app) as client:
        by_length = await client.post(CHAT, json=big)
        assert by_length.status_code == 413 and _error_shape(by_length)["code"] == "request_too_large"

        async def chunks():
            yield b'{"model": "wide", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}]}'

        streamed = await client.post(CHAT, content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413 and _error_shape(streamed)["code"] == "request_too_large"
        runs = await client.post("/v1/runs", content=chunks(), headers={"Content-Type": "application/json"})
        assert runs.status_code == 413
    assert model.requests == []


async def test_message_count_and_prompt_length_limits_are_422():
    model = SlowModel()
    app = make_app({"wide": wide_team(model)}, limits=Limits(max_messages=3, max_prompt_chars=100))
    async with client_for(app) as client:
        many = [{"role": "user", "content": "hi"}] * 4
        response = await client.post(CHAT, json={"model": "wide", "messages": many})
        assert response.status_code == 422 and _error_shape(response)["code"] == "too_many_messages"
        long = [{"role": "user", "content": "x" * 101}]
        response = await client.post(CHAT, json={"model": "wide", "messages": long})
        assert response.status_code == 422 and _error_shape(response)["code"] == "prompt_too_long"
        response = await client.post("/v1/runs", json={"team": "wide", "input": "x" * 101})
        assert response.status_code == 422 and _error_shape(response)["param"] == "messages"
    assert model.requests == []


def test_max_calls_bounds_each_team_kind():
    assert max_calls(load_team("single")) == 1
    assert max_calls(load_team("ann-gsm8k")) == 4
    assert max_calls(load_team("moa")) == 7  # 3 + 3 proposers, one synthesis
    assert max_calls(load_team("debate")) == 9  # 3 agents, up to 3 rounds
    assert max_calls(load_team("hypergraph-gsm8k")) == 15  # 5 agents, 3 rounds


async def test_fan_out_over_the_limit_is_400_before_any_call():
    model = SlowModel()
    app = make_app({"wide": wide_team(model, agents=3)}, limits=Limits(max_fanout=9))  # n=3 is exactly at it
    async with client_for(app) as client:
        ok = await client.post(CHAT, json={"model": "wide", "messages": [{"role": "user", "content": "1?"}], "n": 3})
        assert ok.status_code == 200 and len(model.requests) == 9
        over = await client.post(CHAT, json={"model": "wide", "messages": [{"role": "user", "content": "1?"}], "n": 4})
        assert over.status_code == 400
        error = _error_shape(over)
        assert error["param"] == "n" and error["code"] == "fanout_limit_exceeded"
        assert "n=4" in error["message"] and "fan-out limit of 9 calls" in error["message"]
    assert len(model.requests) == 9


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("DELETE", "/v1/models", None, 405, "method_not_allowed"),
        ("POST", CHAT, {"model": "wide", "messages": "hi"}, 422, "invalid_value"),
        ("POST", CHAT, {"model": "wide", "messages": [{"role": "robot", "content": "hi"}]}, 422, "invalid_value"),
        (
            "POST",
            CHAT,
            {"model": "wide", "messages": [{"role": "user", "content": "hi"}], "n": 0},
            422,
            "invalid_value",
        ),
        ("POST", "/v1/runs", {"team": "wide", "input": "hi", "extra": 1}, 422, "invalid_value"),
    ],
)
async def test_framework_errors_are_openai_shaped(method, path, body, status, code):
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == status
    error = _error_shape(response)
    assert error["code"] == code and error["type"] == "invalid_request_error"


async def test_invalid_json_is_a_clear_422():
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        response = await client.post(CHAT, content=b'{"model": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert _error_shape(response)["message"] == "the request body is not valid JSON"


async def test_metrics_count_requests_calls_tokens_and_runs():
    model = SlowModel()
    app = make_app({"chain3": chain_team(model)})
    async with client_for(app) as client:
        await client.post(CHAT, json={"model": "chain3", "messages": [{"role": "user", "content": "1?"}]})
        await client.get("/v1/runs/run_nope")
        text = (await client.get("/metrics")).text
    assert 'hyperteam_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'hyperteam_http_requests_total{method="GET",route="/v1/runs/{run_id}",status="404"} 1.0' in text
    assert 'hyperteam_llm_calls_total{team="chain3"} 3.0' in text
    assert 'hyperteam_runs_total{status="succeeded",team="chain3"} 1.0' in text
    assert re.search(r'hyperteam_llm_tokens_total\{kind="completion",team="chain3"\} [1-9]', text)
    assert "hyperteam_runs_in_flight 0.0" in text
    assert "hyperteam_http_request_duration_seconds_bucket" in text
    assert "run_nope" not in text
