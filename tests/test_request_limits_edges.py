"""Request limits at their edges: exactly at a limit is allowed, one past it is refused, with what and why.

Checked on the limits alone (and the body middleware on a bare ASGI app), so that each
case costs milliseconds; the service-level tests are in ``test_serve_security.py``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse

import hyperteam as ht
from hyperteam.serve.errors import APIError
from hyperteam.serve.limits import BodyLimit, Limits, max_calls


def _refused(call: Any) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    return info.value


def test_a_conversation_at_the_limits_passes_and_one_past_them_is_422():
    limits = Limits(max_messages=3, max_prompt_chars=10)
    limits.check_conversation(["ab", "cd", "efghij"])  # 3 messages, 10 characters: allowed
    many = _refused(lambda: limits.check_conversation(["a", "b", "c", "d"]))
    assert (many.status_code, many.param, many.code) == (422, "messages", "too_many_messages")
    assert many.message == "too many messages: 4, at most 3"
    long = _refused(lambda: limits.check_conversation(["ab", "cd", "efghijk"]))
    assert (long.status_code, long.param, long.code) == (422, "messages", "prompt_too_long")
    assert long.message == "the prompt is too long: 11 characters, at most 10"


def _layered(fusion: str | dict, agents: int = 3) -> ht.LayeredTeam:
    return ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name=f"s{i}") for i in range(agents)], fusion=fusion)])


def _hypergraph(fusion: str | dict, agents: int = 4, rounds: int = 2) -> ht.HypergraphTeam:
    members = [ht.Agent(name=f"h{i}") for i in range(agents)]
    return ht.HypergraphTeam(members, [[m.name for m in members]], rounds=rounds, fusion=fusion)


@pytest.mark.parametrize(
    ("team", "calls"),
    [
        (_layered("majority_vote"), 3),
        (_layered("llm_synthesize"), 4),
        (_layered("llm_select"), 4),
        (_layered("judge"), 4),
        (_layered("ranked_vote"), 6),  # every agent ranks
        (_layered({"name": "debate", "max_rounds": 3}), 9),
        (_hypergraph("majority_vote"), 8),
        (_hypergraph("judge"), 9),
        (_hypergraph("llm_select"), 9),
        (_hypergraph("llm_synthesize"), 9),
        (_hypergraph("ranked_vote", agents=3, rounds=3), 12),
    ],
)
def test_the_calls_a_team_may_make_are_bounded_from_its_spec(team: ht.Team, calls: int):
    assert max_calls(team) == calls


def test_a_two_layer_team_adds_its_layers_and_an_unknown_team_kind_counts_as_one_call():
    team = ht.LayeredTeam(
        [
            ht.Layer("draft", agents=[ht.Agent(name="a"), ht.Agent(name="b")], fusion="judge"),
            ht.Layer("check", agents=[ht.Agent(name="c")], fusion="majority_vote"),
        ]
    )
    assert max_calls(team) == 4
    assert max_calls(SimpleNamespace(name="custom")) == 1  # type: ignore[arg-type]
    assert max_calls(SimpleNamespace(name="custom", agents=[1, 2], rounds=2, fusion=None)) == 4  # type: ignore[arg-type]
    assert max_calls(SimpleNamespace(name="custom", agents=[1, 2, 3])) == 3  # type: ignore[arg-type]  # one round


def test_fan_out_exactly_at_the_limit_passes_and_one_run_more_is_400():
    team = _layered("judge")  # 4 calls a run
    limits = Limits(max_fanout=8)
    limits.check_fanout(team, 2)
    refused = _refused(lambda: limits.check_fanout(team, 3))
    assert (refused.status_code, refused.param, refused.code) == (400, "n", "fanout_limit_exceeded")
    assert refused.message == (
        f"n=3 runs of team {team.name!r} (up to 4 model calls each) exceed the fan-out limit of 8 calls per request"
    )


# -- the body limit --------------------------------------------------------------------------------


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, as FastAPI does, and answers its size."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await JSONResponse({"size": size})(scope, receive, send)


def _client(app: Any, max_bytes: int = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=BodyLimit(app, max_bytes)), base_url="http://t")


async def test_a_body_at_the_limit_passes_and_one_byte_more_is_413():
    async with _client(_echo) as client:
        ok = await client.post("/v1/x", content=b"x" * 10)
        big = await client.post("/v1/x", content=b"x" * 11)
    assert ok.status_code == 200 and ok.json() == {"size": 10}
    assert big.status_code == 413
    assert big.json()["error"]["message"] == "the request body is larger than 10 bytes"
    assert big.json()["error"]["code"] == "request_too_large"


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_a_streamed_body_is_counted_as_it_arrives():
    async with _client(_echo) as client:
        ok = await client.post("/v1/x", content=_chunks(b"x" * 4, b"x" * 6))
        big = await client.post("/v1/x", content=_chunks(b"x" * 4, b"x" * 4, b"x" * 3))
    assert ok.status_code == 200 and ok.json() == {"size": 10}
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert big.json()["error"]["message"] == "the request body is larger than 10 bytes"


async def _drive(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """Calls an ASGI app with raw headers (httpx would not send a malformed Content-Length)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers, "query_string": b""}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_malformed_content_length_is_400_and_a_declared_oversize_is_refused_unread():
    read: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        read.append(True)
        await _echo(scope, receive, send)

    limit = BodyLimit(app, 10)
    status, body = await _drive(limit, [(b"content-length", b"ten")], b"x")
    assert status == 400 and json.loads(body)["error"]["message"] == "invalid Content-Length header"
    status, body = await _drive(limit, [(b"content-type", b"text/plain"), (b"content-length", b"11")], b"x")
    assert status == 413 and b"larger than 10 bytes" in body
    assert read == []  # refused before the app saw the request
    status, _ = await _drive(limit, [(b"content-length", b"10")], b"x" * 10)
    assert status == 200 and read == [True]


async def test_an_oversize_body_met_after_the_response_started_is_not_answered_twice():
    async def streams_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()

    async with _client(streams_first) as client:
        with pytest.raises(Exception, match="larger than 10 bytes"):
            await client.post("/v1/x", content=_chunks(b"x" * 11))


async def test_non_http_traffic_passes_the_body_limit_untouched():
    seen: list[tuple[str, Any, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["type"], receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        pass

    await BodyLimit(inner, 1)({"type": "lifespan"}, receive, send)
    assert seen == [("lifespan", receive, send)]


async def test_a_request_without_headers_is_let_through():
    status, _ = await _drive(BodyLimit(_echo, 10), [], b"x" * 10)
    assert status == 200
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await BodyLimit(_echo, 10)({"type": "http", "method": "GET", "path": "/", "query_string": b""}, receive, send)
    assert sent[0]["status"] == 200
