"""Chat models behind OpenAI-compatible HTTP endpoints."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import replace
from typing import Any, Literal

import aiohttp
import orjson

from hyperteam.errors import ConfigError, ModelError
from hyperteam.models._rawhttp import RawHttpTransport, Stalled
from hyperteam.models.cache import ResponseCache
from hyperteam.models.limits import AdaptiveLimit, RateLimiter
from hyperteam.models.retry import RetryPolicy, parse_retry_after
from hyperteam.models.stream import StreamError, assemble, is_event_stream
from hyperteam.models.transport import HttpTransport
from hyperteam.models.types import ChatRequest, ChatResult, Completion, Usage

log = logging.getLogger(__name__)

# A hosted API (HTTPS) is not probed; this many requests go out at first, and its 429s halve it.
HOSTED_START = 128
_SCHEME = re.compile(r"^https?://", re.IGNORECASE)
_LOGGED: set[tuple[str, str]] = set()  # (server, note) pairs already logged in this process


class Endpoint:
    """One OpenAI-compatible server: its transport, limits and retry policy.

    Every model served by the endpoint, in every run of the process, goes
    through the same limits, so that the in-flight limit holds across runs and
    not only within one team.

    Args:
        max_concurrency: the most requests in flight, ever.
        adaptive: beneath ``max_concurrency``, keep in flight only what the
            server serves at once: asked of the server (llama.cpp's ``/props``,
            vLLM's ``/metrics``) or learned (see :mod:`hyperteam.models.capacity`).
            False: exactly ``max_concurrency`` (a limit the user set).
        capacity: the server's capacity where the caller knows it (a server
            hyperteam started): no probing.
        stream: stream requests (how a hang is told from a slow answer).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        max_concurrency: int = 128,
        requests_per_second: float | None = None,
        retry: RetryPolicy | None = None,
        cache: ResponseCache | None = None,
        adaptive: bool = True,
        capacity: int | None = None,
        stream: bool = True,
    ) -> None:
        # HTTP://h is http://h (schemes are case-insensitive): plain HTTP, the lean client.
        self.base_url = _SCHEME.sub(lambda m: m.group(0).lower(), base_url.rstrip("/"))
        self.limit = AdaptiveLimit(max_concurrency)
        self.rate = RateLimiter(requests_per_second) if requests_per_second else None
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.stream = stream
        self.transport: HttpTransport | RawHttpTransport
        if self.base_url.startswith("http://"):
            self.transport = RawHttpTransport(self.base_url, api_key, max_connections=max_concurrency)
        else:
            self.transport = HttpTransport(self.base_url, api_key, max_connections=max_concurrency)
        self._rng = random.Random(0)
        self.mode = "user"
        self._discovery: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        if capacity is not None:
            self.set_capacity(capacity)
        elif adaptive:
            self.mode = "pending"
        self.moved_at = 0.0  # loop time a call to this server last finished: its queue moved
        self.honours_n: bool | None = None
        self.usage_in_stream: bool | None = None
        self.notes: list[str] = []

    def set_capacity(self, capacity: int, source: str = "server") -> None:
        """The server serves ``capacity`` requests at once (e.g. a server hyperteam started)."""
        self.limit.set_capacity(capacity, source)
        self.mode = source

    def note(self, text: str) -> None:
        """Remembers a fact about this server for reports, and logs it once a process."""
        if text not in self.notes:
            self.notes.append(text)
            if (self.base_url, text) not in _LOGGED:  # runtimes opened in turn meet the same server again
                _LOGGED.add((self.base_url, text))
                log.warning("%s: %s", self.base_url, text)

    def stats(self) -> dict[str, Any]:
        """The in-flight limit and where it comes from, the peak in flight, and the notes."""
        return {
            "url": self.base_url,
            "limit": self.limit.limit,
            "source": self.limit.source,
            "peak_in_flight": self.limit.peak,
            "cuts": self.limit.cuts,
            "notes": list(self.notes),
        }

    async def _discover(self) -> None:
        from hyperteam.models.capacity import discover, follow_metrics

        if not isinstance(self.transport, RawHttpTransport):
            # A hosted API (HTTPS): no probes; its own limits come back as 429s, which halve ours.
            self.limit.set_capacity(min(self.limit.ceiling, HOSTED_START), "adaptive")
            self.mode = "adaptive"
            return
        self.mode = await discover(self.transport, self.limit, url=self.base_url)
        if self.mode == "metrics":
            self._follower = asyncio.get_running_loop().create_task(follow_metrics(self.transport, self.limit))

    def _stream_cut(self) -> None:
        # llama-cpp-python's server (interrupt_requests, its default) ends the answer it is
        # streaming when another request arrives (a [DONE] without a finish reason, or the
        # connection closed mid-body): it serves one at a time, so send one at a time.
        if self.limit.source == "adaptive" and self.limit.ceiling > 1:
            self.limit.ceiling = 1
            self.limit.set_capacity(1, "adaptive")
            self.note("ends a streamed answer when another request arrives: one request at a time from now on")

    def _moved(self) -> float:
        return self.moved_at

    async def post_json(self, path: str, body: bytes) -> dict[str, Any]:
        """POST with retries; returns the decoded JSON body (a streamed answer is put back together).

        A call is cut when it makes no progress for ``retry.stall_s``, or at
        ``retry.timeout_s`` over all attempts where that is set. Waiting for a
        slot under the in-flight limit is not counted: time queued in the
        client is not the server's fault.

        Raises:
            ModelError: the call failed for good; ``kind`` says how.
        """
        if self.mode == "pending":
            if self._discovery is None:
                self._discovery = asyncio.ensure_future(self._discover())
            await asyncio.shield(self._discovery)
        loop = asyncio.get_running_loop()
        policy = self.retry
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            retry_after: float | None = None
            if self.rate is not None:
                await self.rate.acquire()
            async with self.limit:
                sent_at = loop.time()
                if deadline is None and policy.timeout_s is not None:
                    deadline = sent_at + policy.timeout_s
                remaining = None if deadline is None else deadline - sent_at
                first: float | None = None
                try:
                    status, headers, data, first = await self.transport.send(
                        "POST", path, body, timeout_s=remaining, stall_s=policy.stall_s, moved=self._moved
                    )
                except Stalled as exc:
                    kind, detail = "stalled", f"{exc} (the no-progress bound is {policy.stall_s:g} s)"
                except TimeoutError:
                    kind, detail = "timeout", f"no answer within the {policy.timeout_s or 0:g} s deadline"
                except (aiohttp.ClientError, OSError) as exc:
                    kind, detail = "connection", str(exc) or type(exc).__name__
                    if getattr(exc, "midway", False):  # the server cut an answer it had begun
                        self._stream_cut()
                else:
                    self.moved_at = loop.time()
                    if status == 200:
                        try:
                            payload = _decode(headers, data)
                            choices = payload.get("choices") if isinstance(payload, dict) else None
                            if isinstance(choices, list) and choices:
                                self.limit.observe(sent_at=sent_at, now=loop.time(), first_byte_s=first)
                                return payload
                            kind, detail = "bad_response", "response has no 'choices' list or an empty one"
                        except StreamCut as exc:
                            kind, detail = "bad_response", str(exc)
                            self._stream_cut()
                        except (orjson.JSONDecodeError, StreamError) as exc:
                            kind, detail = "bad_response", f"response body is not a chat completion ({exc})"
                    else:
                        kind, detail = f"http_{status}", _error_message(data)
                        retry_after = parse_retry_after({k.lower(): v for k, v in headers.items()})
                overloaded = kind in ("timeout", "stalled") or status in (429, 503)
                self.limit.observe(sent_at=sent_at, now=loop.time(), first_byte_s=None, overloaded=overloaded)
            if kind in ("timeout", "stalled") or not policy.retryable(status) or attempt >= policy.max_attempts:
                raise _failure(self.base_url, kind, detail, status, attempt)
            delay = policy.backoff(attempt, retry_after, self._rng)
            if deadline is not None and loop.time() + delay >= deadline:
                raise _failure(self.base_url, kind, detail + " (retry would pass the deadline)", status, attempt)
            log.debug("retrying %s after %s (attempt %d, wait %.2fs)", self.base_url, kind, attempt, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        for task in (self._follower, self._discovery):
            if task is not None and not task.done():
                task.cancel()
        await self.transport.close()


class StreamCut(StreamError):
    """A streamed answer ended without a finish reason."""


def _decode(headers: Any, data: bytes) -> Any:
    if is_event_stream(headers):
        payload = assemble(data)
        if not any(c.get("finish_reason") for c in payload["choices"]):
            # Cut short: by a server that ends a stream when another request arrives
            # (llama-cpp-python's interrupt_requests), or mid-way.
            raise StreamCut("the stream ended before the answer did")
        return payload
    return orjson.loads(data)


def _failure(url: str, kind: str, detail: str, status: int | None, attempts: int) -> ModelError:
    what = "cannot reach" if kind == "connection" else "call failed at"
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return ModelError(f"{what} {url}{tries}: {kind}: {detail}", kind=kind, status=status)


def _error_message(data: bytes) -> str:
    try:
        err = orjson.loads(data)
        if isinstance(err, dict):
            inner = err.get("error", err)
            if isinstance(inner, dict) and "message" in inner:
                return str(inner["message"])[:300]
            return str(inner)[:300]
    except orjson.JSONDecodeError:
        pass
    return data[:300].decode("utf-8", "replace")


class EndpointModel:
    """A chat model served at an OpenAI-compatible endpoint (vLLM, OpenAI, the simulator...).

    ``structured`` says how a request's ``json_schema`` is sent: ``"vllm"``
    (``structured_outputs``, also understood by SGLang-style servers) or
    ``"openai"`` (``response_format``).

    Example:
        >>> from hyperteam.models import Runtime
        >>> model = Runtime().model("http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct")
    """

    def __init__(self, endpoint: Endpoint, model: str, *, structured: Literal["vllm", "openai"] = "vllm") -> None:
        self.endpoint = endpoint
        self.model = model
        self.name = f"{endpoint.base_url}#{model}"
        self.structured = structured

    def body(self, request: ChatRequest) -> bytes:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.n != 1:
            body["n"] = request.n
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        if request.json_schema is not None:
            if self.structured == "openai":
                schema = {"name": "output", "schema": request.json_schema}
                body["response_format"] = {"type": "json_schema", "json_schema": schema}
            else:
                body["structured_outputs"] = {"json": request.json_schema}
        if request.extra:
            body.update(request.extra)
        try:
            return orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # an integer past 64 bits, a lone surrogate: not sendable
            raise ConfigError(f"cannot send this request to {self.name}: {exc}") from None

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        """Answers ``request``; ``n`` choices even from a server that ignores ``n``.

        A server that returns fewer choices than asked (llama.cpp's) gets the
        rest asked by separate requests, each with its own seed; the endpoint
        remembers it and from then on sends ``n`` single requests at once.
        """
        ep = self.endpoint
        if request.n > 1 and ep.honours_n is False:
            return await self._separately(request, 0, sample_index, [])
        try:
            result = await self._chat_once(request, sample_index)
        except ModelError as exc:
            # llama.cpp's own server refuses n > 1 outright ("Only one completion choice is allowed").
            if request.n > 1 and ep.honours_n is None and exc.status in (400, 422):
                ep.honours_n = False
                ep.note(f"refused n={request.n} ({exc.kind}): samples are asked by separate requests")
                return await self._separately(request, 0, sample_index, [])
            raise
        got = len(result.completions)
        if request.n > 1 and ep.honours_n is None:
            ep.honours_n = got >= request.n
            if not ep.honours_n:
                ep.note(f"returned {got} of n={request.n} choices: the rest are asked by separate requests")
        if request.n > 1 and got < request.n:
            return await self._separately(request, got, sample_index, [result])
        return result

    async def _separately(
        self, request: ChatRequest, have: int, sample_index: int, results: list[ChatResult]
    ) -> ChatResult:
        base = request.seed if request.seed is not None else 0
        singles = [replace(request, n=1, seed=base + i, extra=dict(request.extra)) for i in range(have, request.n)]
        # Another sample_index per sample: caches and seeds keep the samples apart.
        results += await asyncio.gather(
            *(self._chat_once(r, sample_index * 1000 + i) for i, r in enumerate(singles, start=have))
        )
        completions = [c for r in results for c in r.completions][: request.n]
        usage = Usage()
        for r in results:
            usage += r.usage
        usage.latency_s = max((r.usage.latency_s for r in results), default=0.0)
        return ChatResult(completions, usage, model=results[0].model if results else self.model)

    async def _chat_once(self, request: ChatRequest, sample_index: int) -> ChatResult:
        body = self.body(request)
        cache = self.endpoint.cache
        key = cache.key(self.endpoint.base_url, body, sample_index) if cache is not None else ""
        if cache is not None and (hit := cache.get(key)) is not None:
            result = parse_chat_response(orjson.loads(hit), self.model, latency_s=0.0)
            result.cached = True
            return result
        started = time.perf_counter()
        sent = body
        if self.endpoint.stream:
            # Streamed, so that a slow answer (tokens arriving) is told from a hung one.
            sent = body[:-1] + b',"stream":true,"stream_options":{"include_usage":true}}'
        payload = await self.endpoint.post_json("/chat/completions", sent)
        if not payload.get("usage"):
            payload["usage"] = self._estimated_usage(request, payload)
        payload.pop("x_stream", None)
        result = parse_chat_response(payload, self.model, latency_s=time.perf_counter() - started)
        if cache is not None:
            cache.put(key, orjson.dumps(payload))
        return result

    def _estimated_usage(self, request: ChatRequest, payload: dict[str, Any]) -> dict[str, int]:
        # Some servers send no usage in streams (llama-cpp-python): count with the
        # approximate tokenizer rather than report zero tokens.
        from hyperteam.models.tokenizer import count_message_tokens, count_tokens

        self.endpoint.usage_in_stream = False
        self.endpoint.note("sends no token usage with streamed answers: tokens are estimated")
        texts = [(c.get("message") or {}).get("content") or "" for c in payload["choices"]]
        return {
            "prompt_tokens": count_message_tokens(request.messages),
            "completion_tokens": sum(count_tokens(t) for t in texts),
        }


def parse_chat_response(payload: dict[str, Any], model: str, *, latency_s: float) -> ChatResult:
    """Turns an OpenAI chat.completion body into a :class:`ChatResult`."""
    completions = []
    for choice in payload["choices"]:
        message = choice.get("message") or {}
        logprobs = None
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and lp.get("content"):
            logprobs = [tok.get("logprob", 0.0) for tok in lp["content"]]
        completions.append(Completion(message.get("content") or "", choice.get("finish_reason"), logprobs))
    usage = payload.get("usage") or {}
    return ChatResult(
        completions,
        Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), 1, latency_s),
        model=payload.get("model") or model,
    )
