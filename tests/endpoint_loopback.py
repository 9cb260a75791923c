"""Loopback chat servers and canned answers for the endpoint client's tests (tests/test_endpoint_*.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from hyperteam.models import Endpoint, RetryPolicy
from tests.aiohttp_loopback import aiohttp_server

MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ok_body(text: str = "#### 5", *, usage: dict | None = None, choices: int = 1, model: str = "served") -> dict:
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


def sse(*events: dict | str) -> web.Response:
    lines = [f"data: {e if isinstance(e, str) else orjson.dumps(e).decode()}\n\n" for e in events]
    return web.Response(body="".join(lines).encode(), content_type="text/event-stream")


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "c", "model": "served", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


class Loopback:
    """Records each chat request's body (and Authorization header) and answers from a list of replies,
    then with ``ok_body()``."""

    def __init__(self, *replies: Callable[[dict], web.StreamResponse]) -> None:
        self.replies = list(replies)
        self.bodies: list[dict] = []
        self.keys: list[str | None] = []
        self.url = ""
        # Handlers that hold a request wait for this; set on leaving loopback(), so that a test
        # that fails (or a mutant that hangs a call) does not wait for the server's shutdown.
        self.release = asyncio.Event()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.keys.append(request.headers.get("Authorization"))
        self.bodies.append(orjson.loads(await request.read()))
        if self.replies:
            return self.replies.pop(0)(self.bodies[-1])
        return web.json_response(ok_body(usage=USAGE))


class Hangs(Loopback):
    """Holds every chat request until the test leaves ``loopback()`` (a server that never answers)."""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        await self.release.wait()
        return web.json_response(ok_body(usage=USAGE))


@contextlib.asynccontextmanager
async def loopback(server: Loopback, extra: dict[str, Handler] | None = None) -> AsyncIterator[Loopback]:
    routes = [("post", "/v1/chat/completions", server.chat), *(("get", p, h) for p, h in (extra or {}).items())]
    async with aiohttp_server(routes) as url:
        server.url = url
        try:
            yield server
        finally:
            server.release.set()


def fast_endpoint(url: str, *, attempts: int = 4, **kw: Any) -> Endpoint:
    policy = RetryPolicy(max_attempts=attempts, base_delay_s=0.001, max_delay_s=0.002)
    kw.setdefault("capacity", 4)
    return Endpoint(url, retry=policy, **kw)
