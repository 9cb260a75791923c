"""The endpoint client as a server sees it and as a caller sees it: the request body on the wire,
streamed answers put back together, cut or malformed answers, error messages, capacity discovery,
samples a server leaves out, and the cache. Loopback aiohttp servers; each test takes well under
a second."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.errors import ConfigError
from hyperteam.models import ChatRequest, Endpoint, EndpointModel, ResponseCache, RetryPolicy
from hyperteam.models.capacity import ADAPTIVE_START
from hyperteam.models.endpoint import HOSTED_START, parse_chat_response
from hyperteam.models.tokenizer import count_message_tokens, count_tokens
from tests.aiohttp_loopback import aiohttp_server

MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ok(text: str = "#### 5", *, usage: dict | None = None, choices: int = 1, model: str = "served") -> dict:
    body: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i in range(choices)
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def _sse(*events: dict | str) -> web.Response:
    lines = [f"data: {e if isinstance(e, str) else orjson.dumps(e).decode()}\n\n" for e in events]
    return web.Response(body="".join(lines).encode(), content_type="text/event-stream")


def _chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "c", "model": "served", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


class Loopback:
    """Records each chat request's body and answers from a list of replies, then with ``_ok()``."""

    def __init__(self, *replies: Callable[[dict], web.StreamResponse]) -> None:
        self.replies = list(replies)
        self.bodies: list[dict] = []
        self.url = ""
        # Handlers that hold a request wait for this; set on leaving loopback(), so that a test
        # that fails (or a mutant that hangs a call) does not wait for the server's shutdown.
        self.release = asyncio.Event()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(orjson.loads(await request.read()))
        if self.replies:
            return self.replies.pop(0)(self.bodies[-1])
        return web.json_response(_ok(usage=USAGE))


@contextlib.asynccontextmanager
async def loopback(server: Loopback, extra: dict[str, Handler] | None = None) -> AsyncIterator[Loopback]:
    routes = [("post", "/v1/chat/completions", server.chat), *(("get", p, h) for p, h in (extra or {}).items())]
    async with aiohttp_server(routes) as url:
        server.url = url
        try:
            yield server
        finally:
            server.release.set()


def _endpoint(url: str, *, attempts: int = 4, **kw: Any) -> Endpoint:
    policy = RetryPolicy(max_attempts=attempts, base_delay_s=0.001, max_delay_s=0.002)
    kw.setdefault("capacity", 4)
    return Endpoint(url, retry=policy, **kw)


# --- the request body -------------------------------------------------------------------------


def test_a_plain_request_sends_only_the_model_and_the_messages():
    model = EndpointModel(Endpoint("http://127.0.0.1:9/v1/", capacity=1), "m")
    assert model.name == "http://127.0.0.1:9/v1#m"
    assert orjson.loads(model.body(ChatRequest(MESSAGES))) == {"model": "m", "messages": MESSAGES}


def test_every_set_field_is_sent_even_a_zero_one():
    model = EndpointModel(Endpoint("http://127.0.0.1:9/v1", capacity=1), "m")
    request = ChatRequest(
        MESSAGES, temperature=0.0, max_tokens=0, n=3, seed=0, stop=["\n\n"], extra={"logprobs": True, "top_k": 5}
    )
    assert orjson.loads(model.body(request)) == {
        "model": "m",
        "messages": MESSAGES,
        "temperature": 0.0,
        "max_tokens": 0,
        "n": 3,
        "seed": 0,
        "stop": ["\n\n"],
        "logprobs": True,
        "top_k": 5,
    }
    # An empty stop list is no stop list.
    assert "stop" not in orjson.loads(model.body(ChatRequest(MESSAGES, stop=[])))


def test_a_json_schema_goes_as_structured_outputs_to_vllm_and_as_response_format_to_openai():
    schema = {"type": "object", "properties": {"answer": {"type": "number"}}}
    request = ChatRequest(MESSAGES, json_schema=schema)
    vllm = EndpointModel(Endpoint("http://127.0.0.1:9/v1", capacity=1), "m")
    body = orjson.loads(vllm.body(request))
    assert body["structured_outputs"] == {"json": schema} and "response_format" not in body
    openai = EndpointModel(Endpoint("http://127.0.0.1:9/v1", capacity=1), "m", structured="openai")
    body = orjson.loads(openai.body(request))
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert "structured_outputs" not in body


def test_a_request_that_cannot_be_encoded_is_a_config_error_naming_the_model():
    model = EndpointModel(Endpoint("http://127.0.0.1:9/v1", capacity=1), "m")
    with pytest.raises(ConfigError, match=r"^cannot send this request to http://127\.0\.0\.1:9/v1#m: ") as info:
        model.body(ChatRequest(MESSAGES, extra={"seed": 2**70}))
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_requests_are_streamed_with_usage_unless_streaming_is_off():
    async with loopback(Loopback()) as server:
        streamed = EndpointModel(_endpoint(server.url), "m")
        plain = EndpointModel(_endpoint(server.url, stream=False), "m")
        await streamed.chat(ChatRequest(MESSAGES))
        await plain.chat(ChatRequest(MESSAGES))
    assert server.bodies[0] == {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert server.bodies[1] == {"model": "m", "messages": MESSAGES}


# --- answers ----------------------------------------------------------------------------------


async def test_a_streamed_answer_is_put_back_together_with_the_servers_usage():
    reply = _sse(_chunk("#### "), _chunk("5", "stop"), {"choices": [], "usage": USAGE}, "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        endpoint = _endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5" and result.completions[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (11, 3, 1)
    assert result.model == "served" and endpoint.usage_in_stream is None and endpoint.notes == []


async def test_a_stream_without_usage_gets_estimated_tokens_and_a_note(caplog: pytest.LogCaptureFixture):
    reply = _sse(_chunk("The sum is 5.\n#### 5", "stop"), "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        endpoint = _endpoint(server.url)
        with caplog.at_level(logging.WARNING, logger="hyperteam.models.endpoint"):
            result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.usage.prompt_tokens == count_message_tokens(MESSAGES) > 0
    assert result.usage.completion_tokens == count_tokens("The sum is 5.\n#### 5") > 0
    assert endpoint.usage_in_stream is False
    assert endpoint.notes == ["sends no token usage with streamed answers: tokens are estimated"]
    assert f"{server.url}: sends no token usage" in caplog.text


async def test_an_empty_streamed_answer_is_estimated_as_no_completion_tokens():
    reply = _sse(_chunk(None, "length"), "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        result = await EndpointModel(_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    assert result.text == "" and result.completions[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (count_message_tokens(MESSAGES), 0)


async def test_notes_are_kept_and_logged_once(caplog: pytest.LogCaptureFixture):
    endpoint = Endpoint("http://127.0.0.1:9/v1", capacity=1)
    with caplog.at_level(logging.WARNING, logger="hyperteam.models.endpoint"):
        endpoint.note("one")
        endpoint.note("two")
        endpoint.note("one")
    assert endpoint.notes == ["one", "two"]
    assert [r.getMessage() for r in caplog.records] == ["http://127.0.0.1:9/v1: one", "http://127.0.0.1:9/v1: two"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2


async def test_a_cut_stream_is_retried_and_makes_an_adaptive_endpoint_send_one_at_a_time():
    cut = _sse(_chunk("#### "), "[DONE]")  # no finish reason: another request ended it
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = _endpoint(server.url, capacity=None, max_concurrency=8)
        endpoint.set_capacity(4, "adaptive")
        endpoint.limit.ceiling = 8
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5" and len(server.bodies) == 2
    assert (endpoint.limit.limit, endpoint.limit.ceiling, endpoint.limit.source) == (1, 1, "adaptive")
    assert endpoint.notes == ["ends a streamed answer when another request arrives: one request at a time from now on"]


async def test_a_cut_stream_brings_an_adaptive_limit_of_two_down_to_one():
    cut = _sse(_chunk("#### "), "[DONE]")
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = _endpoint(server.url, capacity=None, max_concurrency=2)
        endpoint.set_capacity(2, "adaptive")
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert (endpoint.limit.limit, endpoint.limit.ceiling) == (1, 1) and len(endpoint.notes) == 1


async def test_a_cut_stream_leaves_a_limit_the_user_or_server_set_alone():
    cut = _sse(_chunk("#### "), "[DONE]")
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = _endpoint(server.url, capacity=3)
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert (endpoint.limit.limit, endpoint.limit.source) == (3, "server") and endpoint.notes == []


async def test_an_answer_cut_every_time_fails_as_a_bad_response_saying_so():
    def cut(body: dict) -> web.Response:
        return _sse(_chunk("#### "), "[DONE]")

    async with loopback(Loopback(cut, cut)) as server:
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(_endpoint(server.url, attempts=2), "m").chat(ChatRequest(MESSAGES))
    assert info.value.kind == "bad_response" and info.value.status == 200
    assert str(info.value) == (
        f"call failed at {server.url} after 2 attempts: bad_response: the stream ended before the answer did"
    )


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (lambda body: web.json_response({"id": "x"}), "response has no 'choices' list"),
        (lambda body: web.json_response([1, 2]), "response has no 'choices' list"),
        (lambda body: web.json_response({"choices": "none"}), "response has no 'choices' list"),
        (
            lambda body: web.Response(text="{not json", content_type="application/json"),
            "response body is not a chat completion (",
        ),
        (lambda body: _sse("{not json"), "response body is not a chat completion (a stream event is not JSON)"),
    ],
)
async def test_a_200_that_is_not_a_chat_completion_is_retried_then_a_bad_response(reply, detail: str):
    async with loopback(Loopback(reply, reply)) as server:
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(_endpoint(server.url, attempts=2), "m").chat(ChatRequest(MESSAGES))
    assert info.value.kind == "bad_response" and info.value.status == 200 and len(server.bodies) == 2
    assert str(info.value).startswith(f"call failed at {server.url} after 2 attempts: bad_response: {detail}")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda body: web.json_response({"error": {"message": "m" * 400, "code": 9}}, status=500), "m" * 300),
        (lambda body: web.json_response({"error": {"message": 42}}, status=500), "42"),
        (lambda body: web.json_response({"error": "overloaded " * 40}, status=500), ("overloaded " * 40)[:300]),
        (lambda body: web.json_response({"detail": "busy"}, status=500), "{'detail': 'busy'}"),
        (lambda body: web.json_response(["busy"], status=500), '["busy"]'),
        (lambda body: web.Response(text="x" * 400, status=500), "x" * 300),
        (lambda body: web.Response(body=b"caf\xe9 down", status=500), "caf\ufffd down"),
        (lambda body: web.Response(status=500), ""),
    ],
)
async def test_a_failed_call_says_what_the_server_said_in_at_most_300_characters(reply, message: str):
    async with loopback(Loopback(reply)) as server:
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(_endpoint(server.url, attempts=1), "m").chat(ChatRequest(MESSAGES))
    assert str(info.value) == f"call failed at {server.url}: http_500: {message}"
    assert (info.value.kind, info.value.status) == ("http_500", 500)


async def test_a_server_that_stops_answering_is_cut_as_stalled_not_retried_and_cuts_the_limit():
    hits = []

    class AnswersOnce(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            hits.append(1)
            if len(hits) > 1:
                await self.release.wait()
            return web.json_response(_ok(usage=USAGE))

    async with loopback(AnswersOnce()) as server:
        policy = RetryPolicy(max_attempts=3, base_delay_s=0.001, stall_s=0.2)
        endpoint = Endpoint(server.url, retry=policy, capacity=None, max_concurrency=16)
        endpoint.set_capacity(8, "adaptive")
        model = EndpointModel(endpoint, "m")
        assert (await model.chat(ChatRequest(MESSAGES))).text == "#### 5"  # an answer, then a hang
        started = asyncio.get_running_loop().time()
        with pytest.raises(ht.ModelError) as info:
            await asyncio.wait_for(model.chat(ChatRequest(MESSAGES, seed=1)), 5)
        elapsed = asyncio.get_running_loop().time() - started
        await endpoint.close()
    assert info.value.kind == "stalled" and info.value.status is None and len(hits) == 2
    assert str(info.value).endswith("(the no-progress bound is 0.2 s)") and "after" not in str(info.value)
    assert 0.15 < elapsed < 2.0
    assert (endpoint.limit.limit, endpoint.limit.cuts) == (4, 1)  # a hang is overload


async def test_a_call_past_its_deadline_fails_as_a_timeout_and_cuts_an_adaptive_limit():
    class Hangs(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            await self.release.wait()
            return web.json_response(_ok(usage=USAGE))

    async with loopback(Hangs()) as server:
        policy = RetryPolicy(max_attempts=3, timeout_s=0.2, stall_s=None)
        endpoint = Endpoint(server.url, retry=policy, capacity=None, max_concurrency=16)
        endpoint.set_capacity(8, "adaptive")
        with pytest.raises(ht.ModelError) as info:
            await asyncio.wait_for(EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES)), 5)
        zero = Endpoint(server.url, retry=RetryPolicy(timeout_s=0.0), capacity=2)
        with pytest.raises(ht.ModelError) as at_once:
            await EndpointModel(zero, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
        await zero.close()
    assert str(info.value) == f"call failed at {server.url}: timeout: no answer within the 0.2 s deadline"
    assert (endpoint.limit.limit, endpoint.limit.cuts) == (4, 1)
    assert str(at_once.value).endswith("timeout: no answer within the 0 s deadline")


async def test_a_slow_first_byte_is_read_as_queueing_and_cuts_an_adaptive_limit():
    delays = [0.0, 0.0, 0.4]

    class Queues(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            await asyncio.sleep(delays.pop(0))
            return web.json_response(_ok(usage=USAGE))

    async with loopback(Queues()) as server:
        endpoint = _endpoint(server.url, capacity=None, max_concurrency=16)
        endpoint.set_capacity(8, "adaptive")
        model = EndpointModel(endpoint, "m")
        for seed in range(3):
            await model.chat(ChatRequest(MESSAGES, seed=seed))
        await endpoint.close()
    assert (endpoint.limit.limit, endpoint.limit.cuts) == (4, 1)


async def _raw_server(replies: list[bytes]) -> tuple[asyncio.base_events.Server, str, list[int]]:
    """A loopback server that writes each connection one raw reply and closes it."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
        served.append(1)
        writer.write(replies.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1", served


async def test_a_connection_cut_mid_answer_is_retried_and_makes_an_adaptive_endpoint_send_one_at_a_time():
    event = b"data: " + orjson.dumps(_chunk("#### ")) + b"\n\n"
    cut = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(event), event)
    )
    body = orjson.dumps(_ok(usage=USAGE))
    whole = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server, url, served = await _raw_server([cut, whole])
    try:
        endpoint = _endpoint(url, capacity=None, max_concurrency=8)
        endpoint.set_capacity(4, "adaptive")
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
    finally:
        server.close()
    assert result.text == "#### 5" and len(served) == 2
    assert (endpoint.limit.limit, endpoint.limit.ceiling) == (1, 1)
    assert endpoint.notes == ["ends a streamed answer when another request arrives: one request at a time from now on"]


async def test_a_refused_connection_says_why_and_leaves_an_adaptive_limit_alone():
    endpoint = _endpoint("http://127.0.0.1:9/v1", attempts=1, capacity=None, max_concurrency=8)
    endpoint.set_capacity(4, "adaptive")
    with pytest.raises(ht.ModelError) as info:
        await asyncio.wait_for(EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES)), 2)  # one attempt
    assert str(info.value).startswith("cannot reach http://127.0.0.1:9/v1: connection: ")
    assert "Connect call failed" in str(info.value)  # the system's own words
    assert info.value.kind == "connection" and info.value.status is None
    assert (endpoint.limit.limit, endpoint.limit.ceiling, endpoint.notes) == (4, 8, [])


async def test_a_connection_error_without_a_message_is_named_by_its_type():
    sends = []

    class Resets:
        async def send(self, *args: Any, **kwargs: Any) -> Any:
            sends.append(1)
            assert len(sends) <= 2, "retried past max_attempts"  # not an OSError: ends the call here
            raise ConnectionResetError()

        async def close(self) -> None:
            pass

    endpoint = _endpoint("http://127.0.0.1:9/v1", attempts=2)
    endpoint.transport = Resets()  # type: ignore[assignment]
    with pytest.raises(ht.ModelError) as info:
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert str(info.value) == "cannot reach http://127.0.0.1:9/v1 after 2 attempts: connection: ConnectionResetError"
    assert len(sends) == 2


async def test_a_call_waiting_at_a_server_that_keeps_answering_others_is_not_cut_as_stalled():
    # The server holds the first call for 0.7 s (it has one slot) while it refuses the other
    # call's tries with bodiless 429s every 0.1 s: its queue moves, so the first call is no hang.
    refusals = 0

    class OneSlot(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            nonlocal refusals
            body = orjson.loads(await request.read())
            if body["seed"] == 0:
                await asyncio.sleep(0.7)
                return web.json_response(_ok(usage=USAGE))
            await asyncio.sleep(0.1)
            if refusals < 6:
                refusals += 1
                return web.Response(status=429)
            return web.json_response(_ok("#### 6", usage=USAGE))

    async with loopback(OneSlot()) as server:
        policy = RetryPolicy(max_attempts=10, base_delay_s=0.001, max_delay_s=0.002, stall_s=0.3)
        endpoint = Endpoint(server.url, retry=policy, capacity=2)
        model = EndpointModel(endpoint, "m")
        held, refused = await asyncio.gather(
            model.chat(ChatRequest(MESSAGES, seed=0)), model.chat(ChatRequest(MESSAGES, seed=1))
        )
        await endpoint.close()
    assert held.text == "#### 5" and refused.text == "#### 6" and refusals == 6


# --- capacity ---------------------------------------------------------------------------------


async def test_a_429_and_a_503_each_halve_an_adaptive_limit_and_stats_say_so():
    busy = lambda body: web.json_response({"error": {"message": "busy"}}, status=429)  # noqa: E731
    down = lambda body: web.json_response({"error": {"message": "down"}}, status=503)  # noqa: E731
    async with loopback(Loopback(busy, down)) as server:
        endpoint = _endpoint(server.url, capacity=None, max_concurrency=64)
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
        endpoint = _endpoint(server.url, capacity=None, max_concurrency=64)
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
            return web.json_response(_ok(usage=USAGE))

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


# --- samples (n > 1) --------------------------------------------------------------------------


def _one_choice(body: dict) -> web.Response:
    seed = body.get("seed", -1)
    usage = {"prompt_tokens": 10, "completion_tokens": 2 + seed}
    return web.json_response(_ok(f"#### {seed}", usage=usage, model=f"served-{seed}"))


async def test_a_server_that_honours_n_gets_one_request_and_is_remembered():
    server = Loopback()
    server.replies = [lambda body: web.json_response(_ok(usage=USAGE, choices=body.get("n", 1)))] * 2
    async with loopback(server):
        endpoint = _endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        result = await model.chat(ChatRequest(MESSAGES, n=3, seed=1))
        assert endpoint.honours_n is True
        again = await model.chat(ChatRequest(MESSAGES, n=3, seed=1))
    assert len(result.completions) == 3 and len(again.completions) == 3
    assert [b.get("n") for b in server.bodies] == [3, 3] and endpoint.notes == []


async def test_samples_a_server_leaves_out_are_asked_one_by_one_with_the_next_seeds():
    server = Loopback(*[_one_choice] * 8)
    async with loopback(server):
        endpoint = _endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        result = await model.chat(ChatRequest(MESSAGES, n=4, seed=5))
        assert endpoint.honours_n is False
        assert endpoint.notes == ["returned 1 of n=4 choices: the rest are asked by separate requests"]
        again = await model.chat(ChatRequest(MESSAGES, n=4, seed=5))
    assert [c.text for c in result.completions] == ["#### 5", "#### 6", "#### 7", "#### 8"]
    assert [(b.get("n"), b.get("seed")) for b in server.bodies[:4]] == [(4, 5), (None, 6), (None, 7), (None, 8)]
    # Remembered: the next call sends the four singles at once.
    assert [(b.get("n"), b.get("seed")) for b in server.bodies[4:]] == [(None, 5), (None, 6), (None, 7), (None, 8)]
    assert [c.text for c in again.completions] == [c.text for c in result.completions]
    assert result.usage.calls == 4 and result.usage.prompt_tokens == 40
    assert result.usage.completion_tokens == (2 + 5) + (2 + 6) + (2 + 7) + (2 + 8)
    assert result.model == "served-5"  # the first answer's
    assert all("n" not in b for b in server.bodies[1:])


async def test_samples_without_a_seed_are_seeded_from_zero():
    server = Loopback(*[_one_choice] * 3)
    async with loopback(server):
        endpoint = _endpoint(server.url)
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
        endpoint = _endpoint(url)
        endpoint.honours_n = False
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=3, seed=0))
    assert 0.2 <= result.usage.latency_s < 0.35


async def test_a_server_that_returns_more_than_n_choices_gives_back_n():
    server = Loopback(lambda body: web.json_response(_ok(usage=USAGE, choices=1)))
    server.replies += [lambda body: web.json_response(_ok(usage=USAGE, choices=3))]
    async with loopback(server):
        endpoint = _endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2, seed=0))
    assert len(result.completions) == 2 and len(server.bodies) == 2


@pytest.mark.parametrize("status", [400, 422])
async def test_a_server_that_refuses_n_gets_singles_and_a_note(status: int):
    refuse = lambda body: web.json_response({"error": {"message": "Only one"}}, status=status)  # noqa: E731
    server = Loopback(refuse, *[_one_choice] * 2)
    async with loopback(server):
        endpoint = _endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2, seed=3))
    assert [c.text for c in result.completions] == ["#### 3", "#### 4"]
    assert [b.get("n") for b in server.bodies] == [2, None, None] and endpoint.honours_n is False
    assert endpoint.notes == [f"refused n=2 (http_{status}): samples are asked by separate requests"]


async def test_a_refusal_of_a_single_request_or_a_server_error_is_not_taken_for_refusing_n():
    refuse = lambda body: web.json_response({"error": {"message": "bad"}}, status=400)  # noqa: E731
    async with loopback(Loopback(refuse)) as server:
        endpoint = _endpoint(server.url)
        with pytest.raises(ht.ModelError, match="bad"):
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        assert endpoint.honours_n is None
    forbidden = lambda body: web.json_response({"error": {"message": "no"}}, status=403)  # noqa: E731
    async with loopback(Loopback(forbidden)) as server:
        endpoint = _endpoint(server.url)
        with pytest.raises(ht.ModelError, match="no") as info:
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2))
    assert info.value.status == 403 and endpoint.honours_n is None and len(server.bodies) == 1
    # Known to honour n: a 400 is the request's fault, not n's.
    async with loopback(Loopback(refuse)) as server:
        endpoint = _endpoint(server.url)
        endpoint.honours_n = True
        with pytest.raises(ht.ModelError, match="bad"):
            await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES, n=2))
    assert endpoint.honours_n is True and len(server.bodies) == 1


async def test_samples_asked_separately_are_cached_apart(tmp_path):
    server = Loopback(*[_one_choice] * 3)
    async with loopback(server):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        endpoint = _endpoint(server.url, cache=cache)
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
        endpoint = _endpoint(server.url, cache=cache)
        endpoint.honours_n = False
        model = EndpointModel(endpoint, "m")
        await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=0)
        await model.chat(ChatRequest(MESSAGES, n=3, seed=0), sample_index=1)
        cache.close()
    assert len(server.bodies) == 6 and cache.hits == 0


async def test_a_cached_answer_is_marked_costs_no_time_and_keeps_the_servers_usage(tmp_path):
    async with loopback(Loopback()) as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(_endpoint(server.url, cache=cache), "m")
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
    seen: list[str | None] = []

    class Keyed(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            seen.append(request.headers.get("Authorization"))
            return await super().chat(request)

    async with loopback(Keyed()) as server:
        await EndpointModel(_endpoint(server.url, api_key="sk-test-123"), "m").chat(ChatRequest(MESSAGES))
        await EndpointModel(_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    assert seen == ["Bearer sk-test-123", None]


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
            await EndpointModel(_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    retries = [r.getMessage() for r in caplog.records if r.name == "hyperteam.models.endpoint"]
    assert retries == [
        f"retrying {server.url} after http_429 (attempt 1, wait 0.05s)",
        f"retrying {server.url} after http_429 (attempt 2, wait 0.05s)",
    ]


async def test_a_plain_request_to_a_server_known_to_ignore_n_is_sent_as_it_is():
    async with loopback(Loopback()) as server:
        endpoint = _endpoint(server.url)
        endpoint.honours_n = False
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5"
    assert server.bodies == [
        {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    ]


async def test_two_samples_from_a_server_that_ignores_n_are_two_singles_once_it_is_known():
    server = Loopback(*[_one_choice] * 5)
    async with loopback(server):
        endpoint = _endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        first = await model.chat(ChatRequest(MESSAGES, n=2, seed=3))
        assert endpoint.honours_n is False
        assert endpoint.notes == ["returned 1 of n=2 choices: the rest are asked by separate requests"]
        second = await model.chat(ChatRequest(MESSAGES, n=2, seed=3))
    assert [b.get("n") for b in server.bodies] == [2, None, None, None]
    assert [c.text for c in first.completions] == [c.text for c in second.completions] == ["#### 3", "#### 4"]


async def test_a_plain_request_says_nothing_about_n_so_a_later_refusal_of_n_is_still_understood():
    refuse = lambda body: web.json_response({"error": {"message": "Only one"}}, status=400)  # noqa: E731
    server = Loopback(lambda body: web.json_response(_ok(usage=USAGE)), refuse, _one_choice, _one_choice)
    async with loopback(server):
        endpoint = _endpoint(server.url)
        model = EndpointModel(endpoint, "m")
        await model.chat(ChatRequest(MESSAGES))
        assert endpoint.honours_n is None
        result = await model.chat(ChatRequest(MESSAGES, n=2, seed=0))
    assert [c.text for c in result.completions] == ["#### 0", "#### 1"]
    assert [b.get("n") for b in server.bodies] == [None, 2, None, None]


async def test_an_answer_with_no_choices_is_an_empty_answer_asked_once():
    async with loopback(Loopback(lambda body: web.json_response({"choices": [], "usage": USAGE}))) as server:
        result = await EndpointModel(_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    assert result.completions == [] and result.text == "" and len(server.bodies) == 1


async def test_all_the_samples_asked_at_once_come_from_the_cache_the_second_time(tmp_path):
    server = Loopback(lambda body: web.json_response(_ok(usage=USAGE, choices=body.get("n", 1))))
    async with loopback(server):
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(_endpoint(server.url, cache=cache), "m")
        first = await model.chat(ChatRequest(MESSAGES, n=3, seed=0))
        again = await model.chat(ChatRequest(MESSAGES, n=3, seed=0))
        cache.close()
    assert len(first.completions) == len(again.completions) == 3 and len(server.bodies) == 1
    assert again.cached and not first.cached


async def test_an_answer_without_a_model_name_is_credited_to_the_model_asked(tmp_path):
    nameless = {k: v for k, v in _ok(usage=USAGE).items() if k != "model"}
    async with loopback(Loopback(lambda body: web.json_response(nameless))) as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        model = EndpointModel(_endpoint(server.url, cache=cache), "asked-model")
        fresh = await model.chat(ChatRequest(MESSAGES))
        cached = await model.chat(ChatRequest(MESSAGES))
        cache.close()
    assert fresh.model == cached.model == "asked-model" and cached.cached


async def test_a_first_call_that_hangs_is_cut_as_stalled():
    class Hangs(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            await request.read()
            await self.release.wait()
            return web.json_response(_ok(usage=USAGE))

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
    seen: list[str | None] = []

    class Keyed(Loopback):
        async def chat(self, request: web.Request) -> web.StreamResponse:
            seen.append(request.headers.get("Authorization"))
            return await super().chat(request)

    async with loopback(Keyed()) as server:
        endpoint = Endpoint("https://api.example.invalid/v1", api_key="sk-hosted", max_concurrency=3)
        endpoint.transport.base_url = server.url  # the HTTPS transport over plain loopback: no TLS in tests
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
    assert result.text == "#### 5" and seen == ["Bearer sk-hosted"]
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
