"""How the endpoint client learns how many requests a server takes at once, and what counts as overload.

Loopback aiohttp servers (tests/endpoint_loopback.py); each test takes well under a second."""

from __future__ import annotations

import asyncio
import functools
import logging

import pytest
from aiohttp import web

from hyperteam.models import ChatRequest, Endpoint, EndpointModel
from hyperteam.models.capacity import ADAPTIVE_START
from hyperteam.models.endpoint import HOSTED_START
from tests.endpoint_loopback import MESSAGES, USAGE, Loopback, fast_endpoint, loopback, ok_body

# --- capacity ---------------------------------------------------------------------------------


async def test_a_429_and_a_503_each_halve_an_adaptive_limit_and_stats_say_so():
    busy = lambda body: web.json_response({"error": {"message": "busy"}}, status=429)  # noqa: E731
    down = lambda body: web.json_response({"error": {"message": "down"}}, status=503)  # noqa: E731
    async with loopback(Loopback(busy, down)) as server:
        endpoint = fast_endpoint(server.url, capacity=None, max_concurrency=64)
        endpoint.set_capacity(16, "adaptive")
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        stats = endpoint.stats()
    assert result.text == "#### 5" and len(server.bodies) == 3
    assert stats == {
        "url": server.url,
        "limit": 4,
        "source": "adaptive",
        "peak_in_flight": 1,
        "cuts": 2,
        "notes": [],
    }
    stats["notes"].append("changed")
    assert endpoint.stats()["notes"] == []  # a copy


async def test_a_server_error_that_is_not_overload_does_not_cut_the_limit():
    failing = lambda body: web.Response(status=500)  # noqa: E731
    async with loopback(Loopback(failing, failing)) as server:
        endpoint = fast_endpoint(server.url, capacity=None, max_concurrency=64)
        endpoint.set_capacity(16, "adaptive")
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert (endpoint.limit.limit, endpoint.limit.cuts) == (16, 0) and len(server.bodies) == 3


async def test_a_local_server_that_says_nothing_is_learned_from_one_request_at_a_time(
    caplog: pytest.LogCaptureFixture,
):
    gets: list[str] = []

    async def missing(request: web.Request) -> web.Response:
        gets.append(request.path)
        return web.Response(status=404)

    extra = {"/props": missing, "/slots": missing, "/metrics": missing}
    async with loopback(Loopback(), extra) as server:
        endpoint = Endpoint(server.url, max_concurrency=16)
        assert endpoint.mode == "pending"
        model = EndpointModel(endpoint, "m")
        with caplog.at_level(logging.INFO, logger="hyperteam.models.capacity"):
            await asyncio.gather(*(model.chat(ChatRequest(MESSAGES, seed=i)) for i in range(3)))
        assert f"{server.url} does not say how many requests it serves at once" in caplog.text
        assert endpoint.mode == "adaptive" and endpoint.limit.source == "adaptive"
        assert endpoint.limit.limit <= 4  # learning from ADAPTIVE_START up, not the 16 allowed
        await endpoint.close()
        assert sorted(gets) == ["/metrics", "/props", "/slots"]  # asked once, not once per call
        fresh = Endpoint(server.url, max_concurrency=16)
        await fresh._discover()
        assert (fresh.mode, fresh.limit.limit) == ("adaptive", ADAPTIVE_START)
        await fresh.close()
    assert len(server.bodies) == 3


async def test_a_server_that_reports_its_slots_is_sent_that_many():
    async def props(request: web.Request) -> web.Response:
        return web.json_response({"total_slots": 3})

    async with loopback(Loopback(), {"/props": props}) as server:
        endpoint = Endpoint(server.url, max_concurrency=16)
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
    assert (endpoint.mode, endpoint.limit.limit, endpoint.limit.source) == ("server", 3, "server")
    assert endpoint.stats()["limit"] == 3 and endpoint.stats()["source"] == "server"


async def test_a_vllm_server_is_followed_through_its_metrics_until_closed():
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text='vllm:num_requests_running{model_name="m"} 1.0\nvllm:num_requests_waiting 0.0\n')

    async with loopback(Loopback(), {"/metrics": metrics}) as server:
        endpoint = Endpoint(server.url, max_concurrency=16)
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        follower = endpoint._follower
        assert endpoint.mode == "metrics" and follower is not None and not follower.done()
        await endpoint.close()
        await asyncio.sleep(0)
    assert follower.cancelled()


async def test_a_vllm_queue_brings_the_limit_down_to_what_it_runs(monkeypatch: pytest.MonkeyPatch):
    from hyperteam.models import capacity

    fast = functools.partial(capacity.follow_metrics, interval_s=0.02)
    monkeypatch.setattr(capacity, "follow_metrics", fast)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text='vllm:num_requests_running{model_name="m"} 2.0\nvllm:num_requests_waiting 4.0\n')

    class Held(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            await self.release.wait()
            return web.json_response(ok_body(usage=USAGE))

    async with loopback(Held(), {"/metrics": metrics}) as server:
        endpoint = Endpoint(server.url, max_concurrency=16)
        model = EndpointModel(endpoint, "m")
        calls = [asyncio.ensure_future(model.chat(ChatRequest(MESSAGES, seed=i))) for i in range(6)]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if endpoint.limit.limit == 2:
                break
        server.release.set()
        results = await asyncio.gather(*calls)
        follower = endpoint._follower
        assert follower is not None and not follower.done()  # still following
        await endpoint.close()
    assert (endpoint.limit.limit, endpoint.limit.source) == (2, "metrics") and endpoint.limit.cuts >= 1
    assert [r.text for r in results] == ["#### 5"] * 6


async def test_a_hosted_api_is_not_probed_and_starts_at_most_at_the_hosted_start():
    big = Endpoint("https://api.example.invalid/v1", max_concurrency=500)
    await big._discover()  # no request: a hosted API is never probed
    assert (big.mode, big.limit.limit, big.limit.source) == ("adaptive", HOSTED_START, "adaptive")
    small = Endpoint("https://api.example.invalid/v1", max_concurrency=16)
    await small._discover()
    assert (small.mode, small.limit.limit) == ("adaptive", 16)
    assert big._follower is None
    await big.close()
    await small.close()


def test_a_known_capacity_or_a_fixed_limit_is_not_probed():
    assert Endpoint("http://127.0.0.1:9/v1", capacity=5).mode == "server"
    assert Endpoint("http://127.0.0.1:9/v1", capacity=5).limit.limit == 5
    fixed = Endpoint("http://127.0.0.1:9/v1", max_concurrency=7, adaptive=False)
    assert fixed.mode == "user" and fixed.limit.limit == 7
    assert Endpoint("http://127.0.0.1:9/v1", adaptive=False).limit.limit == 128  # the default
