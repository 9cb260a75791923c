"""Chat models behind OpenAI-compatible HTTP endpoints."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Literal

import aiohttp
import orjson

from hyperteam.errors import ModelError
from hyperteam.models._rawhttp import RawHttpTransport
from hyperteam.models.cache import ResponseCache
from hyperteam.models.limits import ConcurrencyLimit, RateLimiter
from hyperteam.models.retry import RetryPolicy, parse_retry_after
from hyperteam.models.transport import HttpTransport
from hyperteam.models.types import ChatRequest, ChatResult, Completion, Usage

log = logging.getLogger(__name__)


class Endpoint:
    """One OpenAI-compatible server: its transport, limits and retry policy.

    Every model served by the endpoint, in every run of the process, goes
    through the same limits, so that ``max_concurrency`` holds across runs and
    not only within one team.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limit = ConcurrencyLimit(max_concurrency)
        self.rate = RateLimiter(requests_per_second) if requests_per_second else None
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.transport: HttpTransport | RawHttpTransport
        if self.base_url.startswith("http://"):
            self.transport = RawHttpTransport(self.base_url, api_key, max_connections=max_concurrency)
        else:
            self.transport = HttpTransport(self.base_url, api_key, max_connections=max_concurrency)
        self._rng = random.Random(0)

    async def post_json(self, path: str, body: bytes) -> dict[str, Any]:
        """POST with retries and one deadline over all attempts; returns the decoded JSON body.

        The deadline starts when the first attempt gets a slot under the
        concurrency limit: time queued behind the process's own calls is not
        the endpoint's fault.

        Raises:
            ModelError: the call failed for good; ``kind`` says how.
        """
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
                if deadline is None:
                    deadline = loop.time() + policy.timeout_s
                remaining = deadline - loop.time()
                try:
                    status, headers, data = await self.transport.post(path, body, timeout_s=remaining)
                except TimeoutError:
                    kind, detail = "timeout", f"no answer within the {policy.timeout_s:g} s deadline"
                except (aiohttp.ClientError, OSError) as exc:
                    kind, detail = "connection", str(exc) or type(exc).__name__
                else:
                    if status == 200:
                        try:
                            payload = orjson.loads(data)
                            if isinstance(payload, dict) and isinstance(payload.get("choices"), list):
                                return payload
                            kind, detail = "bad_response", "response has no 'choices' list"
                        except orjson.JSONDecodeError:
                            kind, detail = "bad_response", "response body is not JSON"
                    else:
                        kind, detail = f"http_{status}", _error_message(data)
                        retry_after = parse_retry_after({k.lower(): v for k, v in headers.items()})
            if kind == "timeout" or not policy.retryable(status) or attempt >= policy.max_attempts:
                raise _failure(self.base_url, kind, detail, status, attempt)
            delay = policy.backoff(attempt, retry_after, self._rng)
            if loop.time() + delay >= deadline:
                raise _failure(self.base_url, kind, detail + " (retry would pass the deadline)", status, attempt)
            log.debug("retrying %s after %s (attempt %d, wait %.2fs)", self.base_url, kind, attempt, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self.transport.close()


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
        return orjson.dumps(body)

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        body = self.body(request)
        cache = self.endpoint.cache
        key = cache.key(self.endpoint.base_url, body, sample_index) if cache is not None else ""
        if cache is not None and (hit := cache.get(key)) is not None:
            result = parse_chat_response(orjson.loads(hit), self.model, latency_s=0.0)
            result.cached = True
            return result
        started = time.perf_counter()
        payload = await self.endpoint.post_json("/chat/completions", body)
        result = parse_chat_response(payload, self.model, latency_s=time.perf_counter() - started)
        if cache is not None:
            cache.put(key, orjson.dumps(payload))
        return result


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
