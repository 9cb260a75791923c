"""A small aiohttp server on loopback, for tests that need a real HTTP endpoint with handlers of their own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


@contextlib.asynccontextmanager
async def aiohttp_server(routes: list[tuple[str, str, Any]]) -> AsyncIterator[str]:
    """Serves these ``(method, path, handler)`` routes on a free loopback port; yields its ``/v1`` URL."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method.upper(), path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
