"""API keys and per-key rate limits at their edges, on the middleware alone (no team, no model).

What a client sees: the status, the error message and code, the ``WWW-Authenticate``
and ``Retry-After`` headers, and which owner its runs are filed under.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from hyperteam.errors import ConfigError
from hyperteam.serve.auth import ANONYMOUS, AuthMiddleware, KeyRing, RateLimiter, current_owner
from hyperteam.serve.errors import APIError


async def _inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await JSONResponse({"owner": scope.get("state", {}).get("owner")})(scope, receive, send)


def _client(keys: list[str], limiter: RateLimiter | None = None) -> httpx.AsyncClient:
    app = AuthMiddleware(_inner, KeyRing(keys), limiter)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _owner_of(key: str) -> str:
    # The owner id is derived from the key's digest: runs stored under it must survive restarts and upgrades.
    digest = hashlib.sha256(key.encode()).digest()
    return "key_" + hashlib.sha256(b"hyperteam-owner:" + digest).hexdigest()[:20]


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[""], ["  "], [None], [5], ["sk-a", ""]])
def test_an_empty_or_non_string_key_is_a_config_error(keys: list[Any]):
    with pytest.raises(ConfigError, match=r"^API keys must be non-empty strings$"):
        KeyRing(keys)


def test_each_key_has_its_own_stable_owner():
    ring = KeyRing(["sk-a", " sk-b "])  # surrounding spaces in the configured key are dropped
    assert len(ring) == 2 and not ring.open
    assert ring.owner("Bearer sk-a") == _owner_of("sk-a")
    assert ring.owner("Bearer sk-b") == _owner_of("sk-b") == KeyRing(["sk-b"]).owner("Bearer sk-b")
    assert ring.owner("Bearer sk-a") != ring.owner("Bearer sk-b")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer sk-a", True),
        ("bearer sk-a", True),
        ("BEARER sk-a", True),
        ("Bearer  sk-a  ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer    ", False),
        ("Basic sk-a", False),
        ("sk-a", False),
        ("Bearer sk-a2", False),
        ("Bearer sk-", False),
    ],
)
def test_only_a_bearer_header_with_a_configured_key_has_an_owner(header: str | None, ok: bool):
    assert (KeyRing(["sk-a"]).owner(header) == _owner_of("sk-a")) is ok
    assert KeyRing(["sk-a"]).owner(header) is None or ok


def test_an_open_service_files_everything_under_anonymous():
    ring = KeyRing()
    assert ring.open and len(ring) == 0
    assert ring.owner(None) == ring.owner("Bearer anything") == ANONYMOUS


# -- the middleware --------------------------------------------------------------------------------


async def test_a_missing_key_and_a_wrong_key_are_401_with_a_bearer_challenge():
    async with _client(["sk-a"]) as client:
        missing = await client.get("/v1/models")
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer sk-a"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == wrong.headers["www-authenticate"] == "Bearer"
    error = missing.json()["error"]
    assert error["message"] == "missing API key: send 'Authorization: Bearer KEY'"
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert wrong.json()["error"]["message"] == "invalid API key"
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200 and ok.json() == {"owner": _owner_of("sk-a")}


async def test_the_first_authorization_header_is_the_one_checked():
    async with _client(["sk-a"]) as client:
        first_good = await client.get("/v1/models", headers=[("Authorization", "Bearer sk-a"), ("Authorization", "x")])
        first_bad = await client.get("/v1/models", headers=[("Authorization", "x"), ("Authorization", "Bearer sk-a")])
    assert first_good.status_code == 200 and first_bad.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"])
async def test_public_paths_need_no_key(path: str):
    async with _client(["sk-a"]) as client:
        response = await client.get(path)
    assert response.status_code == 200 and response.json() == {"owner": None}


async def test_non_http_traffic_passes_through_untouched():
    seen: list[tuple[str, Any, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["type"], receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        pass

    app = AuthMiddleware(inner, KeyRing(["sk-a"]), RateLimiter(0.001, burst=1))
    await app({"type": "lifespan"}, receive, send)
    await app({"type": "websocket", "path": "/v1/x", "headers": []}, receive, send)
    assert seen == [("lifespan", receive, send), ("websocket", receive, send)]


async def test_a_request_without_headers_is_asked_for_a_key():
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = AuthMiddleware(_inner, KeyRing(["sk-a"]))
    await app({"type": "http", "method": "GET", "path": "/v1/x", "query_string": b""}, receive, send)
    assert sent[0]["status"] == 401


async def test_an_open_service_passes_requests_as_anonymous():
    async with _client([]) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200 and response.json() == {"owner": ANONYMOUS}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_throttled_key_gets_429_with_whole_seconds_to_wait():
    clock = Clock()
    limiter = RateLimiter(0.4, burst=2, clock=clock)
    headers = {"Authorization": "Bearer sk-a"}
    async with _client(["sk-a"], limiter) as client:
        assert [(await client.get("/v1/x", headers=headers)).status_code for _ in range(2)] == [200, 200]
        throttled = await client.get("/v1/x", headers=headers)
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "3"  # 2.5 s rounded up
        error = throttled.json()["error"]
        assert error["message"] == "rate limit exceeded (0.4 requests/s per key); retry after 3 s"
        assert error["code"] == "rate_limit_exceeded"
        clock.now += 2.4  # 0.96 of a token: 0.1 s short, still told to wait a whole second
        again = await client.get("/v1/x", headers=headers)
        assert again.status_code == 429 and again.headers["retry-after"] == "1"
        clock.now += 0.2
        assert (await client.get("/v1/x", headers=headers)).status_code == 200


# -- the token bucket ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, -2.0])
def test_a_rate_that_is_not_positive_is_a_config_error(rate: float):
    with pytest.raises(ConfigError, match=rf"^rate limit must be > 0 requests a second, got {rate}$"):
        RateLimiter(rate)


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1.0), (1.0, 1.0), (3.0, 3.0)])
def test_the_default_burst_is_one_seconds_worth_and_at_least_one(rate: float, burst: float):
    clock = Clock()
    limiter = RateLimiter(rate, clock=clock)
    assert limiter.burst == burst
    assert [limiter.acquire("k") for _ in range(int(burst))] == [0.0] * int(burst)
    assert limiter.acquire("k") == pytest.approx(1 / rate)


def test_each_owner_has_its_own_bucket_and_a_partial_token_shortens_the_wait():
    clock = Clock()
    limiter = RateLimiter(2.0, burst=1, clock=clock)
    assert limiter.acquire("a") == 0.0 and limiter.acquire("b") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.3  # 0.6 of a token
    assert limiter.acquire("a") == pytest.approx(0.2)
    clock.now += 0.2
    assert limiter.acquire("a") == 0.0


async def test_a_route_reached_without_the_middleware_refuses_rather_than_guesses():
    def request(state: dict[str, Any]) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": state})

    with pytest.raises(APIError) as refused:
        await current_owner(request({}), None)
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.message == "missing API key"
    assert await current_owner(request({"owner": "key_x"}), None) == "key_x"
