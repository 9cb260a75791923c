"""Samples (n > 1) a server leaves out, answer parsing, the cache, the retry log and the rest a user sees of the
endpoint client.

Loopback aiohttp servers (tests/endpoint_loopback.py); each test takes well under a second."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.models import ChatRequest, Endpoint, EndpointModel, ResponseCache, RetryPolicy
from hyperteam.models.endpoint import parse_chat_response
from tests.aiohttp_loopback import aiohttp_server
from tests.endpoint_loopback import MESSAGES, USAGE, Hangs, Loopback, fast_endpoint, loopback, ok_body

# --- samples (n > 1) --------------------------------------------------------------------------


def _one_choice(body: dict) -> web.Response:
    seed = body.get("seed", -1)
    usage = {"prompt_tokens": 10, "completion_tokens": 2 + seed}
    return web.json_response(ok_body(f"#### {seed}", usage=usage, model=f"served-{seed}"))


async def test_a_server_that_honours_n_gets_one_request_and_is_remembered():
    server = Loopback()
    server.replies = [lambda body: web.json_response(ok_body(usage=USAGE, choices=body.get("n", 1)))] * 2
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        result = await model.chat(ChatRequest(MESSAGES, n=3, seed=1))
        assert endpoint.honours_n is True
        again = await model.chat(ChatRequest(MESSAGES, n=3, seed=1))
    assert len(result.completions) == 3 and len(again.completions) == 3
    assert [b.get("n") for b in server.bodies] == [3, 3] and endpoint.notes == []


@pytest.mark.parametrize(("n", "seed"), [(4, 5), (2, 3)])
async def test_samples_a_server_leaves_out_are_asked_one_by_one_with_the_next_seeds(n: int, seed: int):
    server = Loopback(*[_one_choice] * (2 * n))
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        result = await model.chat(ChatRequest(MESSAGES, n=n, seed=seed))
        assert endpoint.honours_n is False
        assert endpoint.notes == [f"returned 1 of n={n} choices: the rest are asked by separate requests"]
        again = await model.chat(ChatRequest(MESSAGES, n=n, seed=seed))
    seeds = list(range(seed, seed + n))
    assert [c.text for c in result.completions] == [f"#### {s}" for s in seeds]
    assert [(b.get("n"), b.get("seed")) for b in server.bodies[:n]] == [(n, seed)] + [(None, s) for s in seeds[1:]]
    # Remembered: the next call sends the singles at once.
    assert [(b.get("n"), b.get("seed")) for b in server.bodies[n:]] == [(None, s) for s in seeds]
    assert [c.text for c in again.completions] == [c.text for c in result.completions]


async def test_samples_without_a_seed_are_seeded_from_zero():
    server = Loopback(*[_one_choice] * 3)
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        endpoint.honours_n = False
        request = ChatRequest(MESSAGES, n=3, temperature=0.7, extra={"logprobs": True})
        result = await EndpointModel(endpoint, "m").chat(request)
    assert [b.get("seed") for b in server.bodies] == [0, 1, 2]
    assert all(b["logprobs"] is True and "n" not in b for b in server.bodies)
    assert request.extra == {"logprobs": True} and request.n == 3 and request.seed is None
    assert [c.text for c in result.completions] == ["#### 0", "#### 1", "#### 2"]
    assert all(b.get("temperature") == 0.7 for b in server.bodies)


async def test_the_samples_latency_is_the_slowest_ones_not_their_sum():
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.2 if body.get("seed") == 1 else 0.0)
        return _one_choice(body)

    async with aiohttp_server([("post", "/v1/chat/completions", chat)]) as url:
        endpoint = fast_endpoint(url)
        endpoint.honours_n = False
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=3, seed=0))
    assert 0.2 <= result.usage.latency_s < 0.35


async def test_a_server_that_returns_more_than_n_choices_gives_back_n():
    server = Loopback(lambda body: web.json_response(ok_body(usage=USAGE, choices=1)))
    server.replies += [lambda body: web.json_response(ok_body(usage=USAGE, choices=3))]
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2, seed=0))
    assert len(result.completions) == 2 and len(server.bodies) == 2


@pytest.mark.parametrize("status", [400, 422])
async def test_a_server_that_refuses_n_gets_singles_and_a_note(status: int):
    refuse = lambda body: web.json_response({"error": {"message": "Only one"}}, status=status)  # noqa: E731
    server = Loopback(refuse, *[_one_choice] * 2)
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2, seed=3))
    assert [c.text for c in result.completions] == ["#### 3", "#### 4"]
    assert [b.get("n") for b in server.bodies] == [2, None, None] and endpoint.honours_n is False
    assert endpoint.notes == [f"refused n=2 (http_{status}): samples are asked by separate requests"]


async def test_a_refusal_of_a_single_request_or_a_server_error_is_not_taken_for_refusing_n():
    refuse = lambda body: web.json_response({"error": {"message": "bad"}}, status=400)  # noqa: E731
    async with loopback(Loopback(refuse)) as server:
        endpoint = fast_endpoint(server.url)
        with pytest.raises(ht.ModelError, match="bad"):
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        assert endpoint.honours_n is None
    forbidden = lambda body: web.json_response({"error": {"message": "no"}}, status=403)  # noqa: E731
    async with loopback(Loopback(forbidden)) as server:
        endpoint = fast_endpoint(server.url)
        with pytest.raises(ht.ModelError, match="no") as info:
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2))
    assert info.value.status == 403 and endpoint.honours_n is None and len(server.bodies) == 1
    # Known to honour n: a 400 is the request's fault, not n's.
    async with loopback(Loopback(refuse)) as server:
        endpoint = fast_endpoint(server.url)
        endpoint.honours_n = True
        with pytest.raises(ht.ModelError, match="bad"):
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2))
    assert endpoint.honours_n is True and len(server.bodies) == 1


async def test_samples_asked_separately_are_cached_apart(tmp_path):
    server = Loopback(*[_one_choice] * 3)
    async with loopback(server):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        endpoint = fast_endpoint(server.url, cache=cache)
        endpoint.honours_n = False
        model = EndpointModel(endpoint, "m")
        first = await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=2)
        again = await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=2)
        cache.close()
    assert len(server.bodies) == 3 and [c.text for c in again.completions] == [c.text for c in first.completions]
    assert again.usage.calls == 3 and again.usage.latency_s == 0.0


async def test_the_same_samples_asked_again_as_another_sample_index_are_asked_anew(tmp_path):
    server = Loopback(*[_one_choice] * 6)
    async with loopback(server):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        endpoint = fast_endpoint(server.url, cache=cache)
        endpoint.honours_n = False
        model = EndpointModel(endpoint, "m")
        await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=0)
        await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=1)
        cache.close()
    assert len(server.bodies) == 6 and cache.hits == 0


async def test_a_cached_answer_is_marked_costs_no_time_and_keeps_the_servers_usage(tmp_path):
    async with loopback(Loopback()) as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(fast_endpoint(server.url, cache=cache), "m")
        first = await model.chat(ChatRequest(MESSAGES))
        hit = await model.chat(ChatRequest(MESSAGES))
        cache.close()
    assert not first.cached and first.usage.latency_s > 0
    assert hit.cached and hit.usage.latency_s == 0.0 and hit.model == "served"
    assert (hit.usage.prompt_tokens, hit.usage.completion_tokens, hit.usage.calls) == (11, 3, 1)
    assert len(server.bodies) == 1


# --- parsing ----------------------------------------------------------------------------------


def test_a_chat_completion_is_read_with_its_logprobs_and_missing_fields_as_defaults():
    payload = {
        "model": "served",
        "choices": [
            {
                "message": {"content": "#### 5"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "#", "logprob": -0.5}, {"token": "5"}]},
            },
            {"message": None, "logprobs": {"content": []}},
            {"message": {"content": None}, "logprobs": "n/a"},
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": None},
    }
    result = parse_chat_response(payload, "asked", latency_s=0.25)
    assert [(c.text, c.finish_reason, c.logprobs) for c in result.completions] == [
        ("#### 5", "stop", [-0.5, 0.0]),
        ("", None, None),
        ("", None, None),
    ]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (7, 0, 1)
    assert result.usage.latency_s == 0.25 and result.model == "served" and not result.cached
    bare = parse_chat_response({"choices": [], "usage": None}, "asked", latency_s=0.0)
    assert bare.model == "asked" and bare.usage.total_tokens == 0 and bare.usage.calls == 1


# --- more of what a user sees -------------------------------------------------------------------


async def test_the_api_key_goes_as_a_bearer_token():
    async with loopback(Loopback()) as server:
        await EndpointModel(fast_endpoint(server.url, api_key="sk-test-123"), "m").chat(ChatRequest(MESSAGES))
        await EndpointModel(fast_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    assert server.keys == ["Bearer sk-test-123", None]


async def test_a_retry_that_would_pass_the_deadline_fails_now_naming_the_server_and_the_last_error():
    slow_down = lambda body: web.json_response(  # noqa: E731
        {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "5"}
    )
    async with loopback(Loopback(slow_down)) as server:
        policy = RetryPolicy(timeout_s=1.0, base_delay_s=0.001)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(Endpoint(server.url, retry=policy, capacity=2), "m").chat(ChatRequest(MESSAGES))
        elapsed = asyncio.get_running_loop().time() - started
    assert str(info.value) == f"call failed at {server.url}: http_429: slow down (retry would pass the deadline)"
    assert (info.value.kind, info.value.status) == ("http_429", 429) and elapsed < 0.5


async def test_each_retry_is_logged_with_its_reason_attempt_and_wait(caplog: pytest.LogCaptureFixture):
    busy = lambda body: web.Response(status=429, headers={"retry-after-ms": "50"})  # noqa: E731
    async with loopback(Loopback(busy, busy)) as server:
        with caplog.at_level(logging.DEBUG, logger="hyperteam.models.endpoint"):
            await EndpointModel(fast_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    retries = [r.getMessage() for r in caplog.records if r.name == "hyperteam.models.endpoint"]
    assert retries == [
        f"retrying {server.url} after http_429 (attempt 1, wait 0.05s)",
        f"retrying {server.url} after http_429 (attempt 2, wait 0.05s)",
    ]


async def test_a_plain_request_to_a_server_known_to_ignore_n_is_sent_as_it_is():
    async with loopback(Loopback()) as server:
        endpoint = fast_endpoint(server.url)
        endpoint.honours_n = False
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5"
    assert server.bodies == [
        {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    ]


async def test_a_plain_request_says_nothing_about_n_so_a_later_refusal_of_n_is_still_understood():
    refuse = lambda body: web.json_response({"error": {"message": "Only one"}}, status=400)  # noqa: E731
    server = Loopback(lambda body: web.json_response(ok_body(usage=USAGE)), refuse, _one_choice, _one_choice)
    async with loopback(server):
        endpoint = fast_endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        await model.chat(ChatRequest(MESSAGES))
        assert endpoint.honours_n is None
        result = await model.chat(ChatRequest(MESSAGES, n=2, seed=0))
    assert [c.text for c in result.completions] == ["#### 0", "#### 1"]
    assert [b.get("n") for b in server.bodies] == [None, 2, None, None]


async def test_all_the_samples_asked_at_once_come_from_the_cache_the_second_time(tmp_path):
    server = Loopback(lambda body: web.json_response(ok_body(usage=USAGE, choices=body.get("n", 1))))
    async with loopback(server):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(fast_endpoint(server.url, cache=cache), "m")
        first = await model.chat(ChatRequest(MESSAGES, n=3, seed=0))
        again = await model.chat(ChatRequest(MESSAGES, n=3, seed=0))
        cache.close()
    assert len(first.completions) == len(again.completions) == 3 and len(server.bodies) == 1
    assert again.cached and not first.cached


async def test_an_answer_without_a_model_name_is_credited_to_the_model_asked(tmp_path):
    nameless = {k: v for k, v in ok_body(usage=USAGE).items() if k != "model"}
    async with loopback(Loopback(lambda body: web.json_response(nameless))) as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(fast_endpoint(server.url, cache=cache), "asked-model")
        fresh = await model.chat(ChatRequest(MESSAGES))
        cached = await model.chat(ChatRequest(MESSAGES))
        cache.close()
    assert fresh.model == cached.model == "asked-model" and cached.cached


async def test_a_first_call_that_hangs_is_cut_as_stalled():
    async with loopback(Hangs()) as server:
        endpoint = Endpoint(server.url, retry=RetryPolicy(stall_s=0.2), capacity=2)
        with pytest.raises(ht.ModelError) as info:
            await asyncio.wait_for(EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES)), 5)
        await endpoint.close()
    assert info.value.kind == "stalled"


async def test_the_backoff_jitter_is_the_same_from_run_to_run(caplog: pytest.LogCaptureFixture):
    waits = []
    for _ in range(2):
        failing = lambda body: web.Response(status=500)  # noqa: E731
        async with loopback(Loopback(failing, failing)) as server:
            policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.2)
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="hyperteam.models.endpoint"):
                await EndpointModel(Endpoint(server.url, retry=policy, capacity=2), "m").chat(ChatRequest(MESSAGES))
        waits.append([r.getMessage().rsplit("wait ", 1)[1] for r in caplog.records if "retrying" in r.getMessage()])
    assert len(waits[0]) == 2 and waits[0] == waits[1]


async def test_a_hosted_apis_transport_sends_the_key_and_starts_at_the_hosted_limit():
    async with loopback(Loopback()) as server:
        endpoint = Endpoint("https://api.example.invalid/v1", api_key="sk-hosted", max_concurrency=3)
        endpoint.transport.base_url = server.url  # the HTTPS transport over plain loopback: no TLS in tests
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
    assert result.text == "#### 5" and server.keys == ["Bearer sk-hosted"]
    assert (endpoint.mode, endpoint.limit.limit, endpoint.limit.source) == ("adaptive", 3, "adaptive")


async def test_an_endpoint_keeps_no_more_idle_connections_than_it_may_use():
    # The capacity probes (/props, /slots, /metrics) go out at once, on three connections; an
    # endpoint allowed one request at a time keeps one of them open afterwards, not all three.
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    extra = {"/props": missing, "/slots": missing, "/metrics": missing}
    async with loopback(Loopback(), extra) as server:
        endpoint = Endpoint(server.url, max_concurrency=1)
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        assert len(endpoint.transport._idle) == 1  # the sockets left open to the server
        await endpoint.close()
