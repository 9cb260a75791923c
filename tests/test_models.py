"""The endpoint client against real loopback servers: retries, deadlines, limits, cache, usage, specs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.models import ChatRequest, Endpoint, EndpointModel, ResponseCache, RetryPolicy, Runtime, resolve

OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "#### 5"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
}


class Server:
    """A loopback server whose replies come from a list of behaviours, then plain success."""

    def __init__(self, behaviours: list[Callable[[], web.StreamResponse]] | None = None, delay: float = 0.0):
        self.behaviours = list(behaviours or [])
        self.delay = delay
        self.hits = 0
        self.in_flight = 0
        self.peak = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.behaviours:
                reply = self.behaviours.pop(0)()
                if isinstance(reply, Exception):
                    raise reply
                return reply
            return web.json_response(OK_BODY)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future]]:
    runners = []

    async def start(server: Server) -> Server:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server.url = f"http://127.0.0.1:{port}/v1"
        runners.append(runner)
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def _model(url: str, **kw) -> EndpointModel:
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, **kw)
    return EndpointModel(Endpoint(url, retry=policy), "m")


def _request() -> ChatRequest:
    return ChatRequest([{"role": "user", "content": "2 + 3?"}])


async def test_usage_and_text_come_from_the_server(serve):
    server = await serve(Server())
    result = await _model(server.url).chat(_request())
    assert result.text == "#### 5"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (11, 3, 1)


async def test_an_upper_case_scheme_is_the_same_plain_http_endpoint(serve):
    server = await serve(Server())
    loud = server.url.replace("http://", "HTTP://")
    rt = Runtime()
    model = resolve(f"{loud},{server.url.replace('http://', 'hTtP://')}#m", runtime=rt)  # two replicas
    single = resolve(f"{loud}#m", runtime=rt)
    assert isinstance(single, EndpointModel) and single.endpoint.base_url == server.url
    assert type(single.endpoint.transport).__name__ == "RawHttpTransport"  # not treated as a hosted API
    assert (await model.chat(_request())).text == (await single.chat(_request())).text == "#### 5"
    await rt.aclose()


async def test_server_errors_are_retried_then_succeed(serve):
    server = await serve(Server([lambda: web.Response(status=500), lambda: web.Response(status=503)]))
    result = await _model(server.url).chat(_request())
    assert result.text == "#### 5" and server.hits == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(serve, status: int):
    body = {"error": {"message": "bad thing", "type": "invalid_request_error"}}
    server = await serve(Server([lambda: web.json_response(body, status=status)]))
    with pytest.raises(ht.ModelError, match="bad thing") as info:
        await _model(server.url).chat(_request())
    assert info.value.status == status and info.value.kind == f"http_{status}"
    assert server.hits == 1


async def test_retry_after_is_honoured(serve):
    server = await serve(Server([lambda: web.Response(status=429, headers={"Retry-After": "0.4"})]))
    started = time.perf_counter()
    await _model(server.url).chat(_request())
    assert time.perf_counter() - started >= 0.4 and server.hits == 2


async def test_a_hanging_server_is_cut_at_the_deadline(serve):
    # The first attempt fails after 0.3 s and the retry hangs: one deadline covers both attempts,
    # so the call ends 0.6 s after it began, not 0.6 s after the retry began.
    server = Server(delay=0.3)

    def fail_then_hang() -> web.Response:
        server.delay = 5.0
        return web.Response(status=500)

    server.behaviours = [fail_then_hang]
    await serve(server)
    started = time.perf_counter()
    with pytest.raises(ht.ModelError, match=r"0\.6 s deadline") as info:
        await _model(server.url, timeout_s=0.6).chat(_request())
    elapsed = time.perf_counter() - started
    assert info.value.kind == "timeout" and server.hits == 2
    assert 0.55 <= elapsed < 0.8


async def test_an_unreachable_endpoint_fails_after_bounded_retries():
    with pytest.raises(ht.ModelError, match=r"cannot reach http://127\.0\.0\.1:9/v1 after 4 attempts") as info:
        await _model("http://127.0.0.1:9/v1").chat(_request())
    assert info.value.kind == "connection"


async def test_malformed_bodies_are_retried(serve):
    server = await serve(Server([lambda: web.Response(text="{not json", content_type="application/json")]))
    assert (await _model(server.url).chat(_request())).text == "#### 5"
    assert server.hits == 2


async def test_the_concurrency_limit_holds_across_runs(serve):
    server = await serve(Server(delay=0.05))
    runtime = Runtime(max_concurrency=3)
    spec = f"{server.url}#m"
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name=f"a{i}") for i in range(4)])])
    await asyncio.gather(*(team.run("2 + 3?", runtime=runtime, model=spec) for _ in range(5)))
    assert server.hits == 20 and server.peak == 3
    assert runtime.model(spec) is runtime.model(spec)
    await runtime.aclose()


async def test_the_cache_keeps_samples_apart(serve, tmp_path):
    server = await serve(Server())
    cache = ResponseCache(tmp_path / "cache.sqlite")
    model = EndpointModel(Endpoint(server.url, cache=cache), "m")
    first = await model.chat(_request())
    again = await model.chat(_request())
    other_sample = await model.chat(_request(), sample_index=1)
    assert server.hits == 2 and again.cached and not first.cached and not other_sample.cached
    assert again.text == first.text and again.usage.completion_tokens == 3
    cache.close()
    reopened = EndpointModel(Endpoint(server.url, cache=ResponseCache(tmp_path / "cache.sqlite")), "m")
    assert (await reopened.chat(_request())).cached and server.hits == 2


def test_spec_errors_say_what_is_expected(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("HYPERTEAM_BASE_URL", raising=False)
    monkeypatch.delenv("HYPERTEAM_MODEL", raising=False)
    monkeypatch.setenv("HYPERTEAM_VLLM_BIN", "/nonexistent/vllm")  # never a real vLLM, even where one is installed
    rt = Runtime()
    cases = {
        "gpt4": "unknown model spec 'gpt4': expected one of openai:MODEL",
        "sim:1.5": "accuracy must be within",
        "sim:high": "expected sim:ACCURACY",
        "openai:gpt-4o-mini": "needs OPENAI_API_KEY",
        "http://localhost:8000/v1": "names no model: add #NAME",
        "vllm:Qwen/Qwen2.5-7B": "start one with `vllm serve`",
        "scripted": "hyperteam.testing.ScriptedModel",
        "": "set HYPERTEAM_BASE_URL",
    }
    for spec, message in cases.items():
        with pytest.raises(ht.ConfigError, match=message.replace("(", r"\(")):
            resolve(spec, runtime=rt)


def test_specs_resolve(monkeypatch: pytest.MonkeyPatch):
    rt = Runtime()
    model = resolve("http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct", runtime=rt)
    assert isinstance(model, EndpointModel) and model.model == "Qwen/Qwen2.5-7B-Instruct"
    monkeypatch.setenv("HYPERTEAM_BASE_URL", "http://127.0.0.1:8001/v1")
    monkeypatch.setenv("HYPERTEAM_MODEL", "served")
    default = resolve(None, runtime=rt)
    assert isinstance(default, EndpointModel) and default.endpoint.base_url == "http://127.0.0.1:8001/v1"
    assert resolve("sim:0.9", runtime=rt).name == "sim:0.9"


async def test_the_rate_limit_spaces_requests(serve):
    server = await serve(Server())
    model = EndpointModel(Endpoint(server.url, requests_per_second=20), "m")
    started = time.perf_counter()
    await asyncio.gather(*(model.chat(_request()) for _ in range(30)))
    # A burst of 20 goes at once, the next 10 at 20 per second.
    assert time.perf_counter() - started >= 0.45 and server.hits == 30
