"""The endpoint client's retry rules at their edges: every no-retry status, Retry-After forms, the call's deadline."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.models.retry import NO_RETRY_STATUSES, RetryPolicy, parse_retry_after
from tests.test_models import Server, _model, _request, serve  # noqa: F401  (serve is a fixture)


@pytest.mark.parametrize("status", sorted(NO_RETRY_STATUSES))
async def test_every_client_error_fails_at_once_with_its_status(serve, status: int):  # noqa: F811
    body = {"error": {"message": "refused", "type": "invalid_request_error"}}
    server = await serve(Server([lambda: web.json_response(body, status=status)]))
    with pytest.raises(ht.ModelError, match="refused") as info:
        await _model(server.url).chat(_request())
    assert info.value.status == status and info.value.kind == f"http_{status}"
    assert server.hits == 1


def test_the_statuses_that_are_never_retried():
    # A 403 (a key without access) or a 413 (a prompt too large) cannot succeed on a second try.
    assert {400, 401, 403, 404, 409, 413, 422} == NO_RETRY_STATUSES
    policy = RetryPolicy()
    assert not policy.retryable(403) and policy.retryable(429) and policy.retryable(500) and policy.retryable(None)


def test_retry_after_ms_is_milliseconds_and_wins_over_retry_after():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({}) is None


async def test_retry_after_ms_header_waits_that_many_milliseconds(serve):  # noqa: F811
    server = await serve(Server([lambda: web.Response(status=429, headers={"retry-after-ms": "300"})]))
    started = time.perf_counter()
    result = await _model(server.url, timeout_s=5.0).chat(_request())
    elapsed = time.perf_counter() - started
    assert result.text == "#### 5" and server.hits == 2
    assert 0.3 <= elapsed < 2.0


async def test_a_retry_after_past_the_time_left_fails_now_not_at_the_deadline(serve):  # noqa: F811
    # 0.3 s spent on the first attempt: a 0.4 s wait fits in the 0.6 s timeout but not in the 0.3 s left.
    server = await serve(Server([lambda: web.Response(status=429, headers={"Retry-After": "0.4"})], delay=0.3))
    started = time.perf_counter()
    with pytest.raises(ht.ModelError, match="retry would pass the deadline") as info:
        await _model(server.url, timeout_s=0.6).chat(_request())
    assert info.value.kind == "http_429" and info.value.status == 429
    assert server.hits == 1 and time.perf_counter() - started < 0.5
