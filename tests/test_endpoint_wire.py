"""The endpoint client as a server sees it and as a caller sees it: the request body on the wire,
streamed answers put back together, cut or malformed answers and their error messages.

Loopback aiohttp servers (tests/endpoint_loopback.py); each test takes well under a second."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.errors import ConfigError
from hyperteam.models import ChatRequest, Endpoint, EndpointModel, RetryPolicy
from hyperteam.models.tokenizer import count_message_tokens, count_tokens
from tests.endpoint_loopback import MESSAGES, USAGE, Hangs, Loopback, chunk, fast_endpoint, loopback, ok_body, sse

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
        streamed = EndpointModel(fast_endpoint(server.url), "m")
        plain = EndpointModel(fast_endpoint(server.url, stream=False), "m")
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
    reply = sse(chunk("#### "), chunk("5", "stop"), {"choices": [], "usage": USAGE}, "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        endpoint = fast_endpoint(server.url)
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5" and result.completions[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.calls) == (11, 3, 1)
    assert result.model == "served" and endpoint.usage_in_stream is None and endpoint.notes == []


async def test_a_stream_without_usage_gets_estimated_tokens_and_a_note(caplog: pytest.LogCaptureFixture):
    reply = sse(chunk("The sum is 5.\n#### 5", "stop"), "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        endpoint = fast_endpoint(server.url)
        with caplog.at_level(logging.WARNING, logger="hyperteam.models.endpoint"):
            result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.usage.prompt_tokens == count_message_tokens(MESSAGES) > 0
    assert result.usage.completion_tokens == count_tokens("The sum is 5.\n#### 5") > 0
    assert endpoint.usage_in_stream is False
    assert endpoint.notes == ["sends no token usage with streamed answers: tokens are estimated"]
    assert f"{server.url}: sends no token usage" in caplog.text


async def test_an_empty_streamed_answer_is_estimated_as_no_completion_tokens():
    reply = sse(chunk(None, "length"), "[DONE]")
    async with loopback(Loopback(lambda body: reply)) as server:
        result = await EndpointModel(fast_endpoint(server.url), "m").chat(ChatRequest(MESSAGES))
    assert result.text == "" and result.completions[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (count_message_tokens(MESSAGES), 0)


async def test_notes_are_kept_and_logged_once(caplog: pytest.LogCaptureFixture):
    endpoint = Endpoint("http://127.0.0.1:9/v1", capacity=1)
    with caplog.at_level(logging.WARNING, logger="hyperteam.models.endpoint"):
        endpoint.note("one")
        endpoint.note("two")
        endpoint.note("one")
        again = Endpoint("http://127.0.0.1:9/v1", capacity=1)  # the same server from the next runtime
        again.note("one")
    assert endpoint.notes == ["one", "two"] and again.notes == ["one"]  # each report has it
    assert [r.getMessage() for r in caplog.records] == ["http://127.0.0.1:9/v1: one", "http://127.0.0.1:9/v1: two"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2


async def test_a_cut_stream_is_retried_and_makes_an_adaptive_endpoint_send_one_at_a_time():
    cut = sse(chunk("#### "), "[DONE]")  # no finish reason: another request ended it
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = fast_endpoint(server.url, capacity=None, max_concurrency=8)
        endpoint.set_capacity(4, "adaptive")
        endpoint.limit.ceiling = 8
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert result.text == "#### 5" and len(server.bodies) == 2
    assert (endpoint.limit.limit, endpoint.limit.ceiling, endpoint.limit.source) == (1, 1, "adaptive")
    assert endpoint.notes == ["ends a streamed answer when another request arrives: one request at a time from now on"]


async def test_a_cut_stream_brings_an_adaptive_limit_of_two_down_to_one():
    cut = sse(chunk("#### "), "[DONE]")
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = fast_endpoint(server.url, capacity=None, max_concurrency=2)
        endpoint.set_capacity(2, "adaptive")
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert (endpoint.limit.limit, endpoint.limit.ceiling) == (1, 1) and len(endpoint.notes) == 1


async def test_a_cut_stream_leaves_a_limit_the_user_or_server_set_alone():
    cut = sse(chunk("#### "), "[DONE]")
    async with loopback(Loopback(lambda body: cut)) as server:
        endpoint = fast_endpoint(server.url, capacity=3)
        await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
    assert (endpoint.limit.limit, endpoint.limit.source) == (3, "server") and endpoint.notes == []


async def test_an_answer_cut_every_time_fails_as_a_bad_response_saying_so():
    def cut(body: dict) -> web.Response:
        return sse(chunk("#### "), "[DONE]")

    async with loopback(Loopback(cut, cut)) as server:
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(fast_endpoint(server.url, attempts=2), "m").chat(ChatRequest(MESSAGES))
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
        (lambda body: web.json_response({"choices": [], "usage": USAGE}), "response has no 'choices' list or an em"),
        (
            lambda body: web.Response(text="{not json", content_type="application/json"),
            "response body is not a chat completion (",
        ),
        (lambda body: sse("{not json"), "response body is not a chat completion (a stream event is not JSON)"),
    ],
)
async def test_a_200_that_is_not_a_chat_completion_is_retried_then_a_bad_response(reply, detail: str):
    async with loopback(Loopback(reply, reply)) as server:
        with pytest.raises(ht.ModelError) as info:
            await EndpointModel(fast_endpoint(server.url, attempts=2), "m").chat(ChatRequest(MESSAGES))
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
            await EndpointModel(fast_endpoint(server.url, attempts=1), "m").chat(ChatRequest(MESSAGES))
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
            return web.json_response(ok_body(usage=USAGE))

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
            return web.json_response(ok_body(usage=USAGE))

    async with loopback(Queues()) as server:
        endpoint = fast_endpoint(server.url, capacity=None, max_concurrency=16)
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
    event = b"data: " + orjson.dumps(chunk("#### ")) + b"\n\n"
    cut = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(event), event)
    )
    body = orjson.dumps(ok_body(usage=USAGE))
    whole = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server, url, served = await _raw_server([cut, whole])
    try:
        endpoint = fast_endpoint(url, capacity=None, max_concurrency=8)
        endpoint.set_capacity(4, "adaptive")
        result = await EndpointModel(endpoint, "m").chat(ChatRequest(MESSAGES))
        await endpoint.close()
    finally:
        server.close()
    assert result.text == "#### 5" and len(served) == 2
    assert (endpoint.limit.limit, endpoint.limit.ceiling) == (1, 1)
    assert endpoint.notes == ["ends a streamed answer when another request arrives: one request at a time from now on"]


async def test_a_refused_connection_says_why_and_leaves_an_adaptive_limit_alone():
    endpoint = fast_endpoint("http://127.0.0.1:9/v1", attempts=1, capacity=None, max_concurrency=8)
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

    endpoint = fast_endpoint("http://127.0.0.1:9/v1", attempts=2)
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
                return web.json_response(ok_body(usage=USAGE))
            await asyncio.sleep(0.1)
            if refusals < 6:
                refusals += 1
                return web.Response(status=429)
            return web.json_response(ok_body("#### 6", usage=USAGE))

    async with loopback(OneSlot()) as server:
        policy = RetryPolicy(max_attempts=10, base_delay_s=0.001, max_delay_s=0.002, stall_s=0.3)
        endpoint = Endpoint(server.url, retry=policy, capacity=2)
        model = EndpointModel(endpoint, "m")
        held, refused = await asyncio.gather(
            model.chat(ChatRequest(MESSAGES, seed=0)), model.chat(ChatRequest(MESSAGES, seed=1))
        )
        await endpoint.close()
    assert held.text == "#### 5" and refused.text == "#### 6" and refusals == 6
