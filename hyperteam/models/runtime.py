"""The runtime: the endpoints, limits and cache that every run in a process shares.

Teams take a runtime through their run context instead of reaching for a
global client. ``Runtime.current()`` gives each event loop a default one, so
that simple scripts share one client per endpoint without any set-up.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.models.cache import ResponseCache
from hyperteam.models.endpoint import Endpoint
from hyperteam.models.retry import RetryPolicy
from hyperteam.models.types import ChatModel

# What a server may get at most when nobody set a limit: the server's own
# capacity (asked or learned) is what holds beneath it.
DEFAULT_CEILING = 1024

_DEFAULTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()


class Runtime:
    """Pools endpoints (one client each) and resolved models for a process.

    Args:
        max_concurrency: the most requests in flight per endpoint, across all
            runs (default 1024). Beneath it each endpoint keeps in flight what
            its server serves at once: asked of the server or learned, so a
            one-slot llama.cpp server gets one request at a time and the rest
            wait in the client (see :mod:`hyperteam.models.capacity`).
            ``HYPERTEAM_MAX_CONCURRENCY``, where set, is a limit the user
            chose: exactly that many in flight, nothing learned.
        requests_per_second: an optional rate limit per endpoint.
        retry: the retry policy and per-call deadline.
        cache: a path for the SQLite response cache (or a ``ResponseCache``);
            default ``HYPERTEAM_CACHE``, or no cache.

    Example:
        >>> async def main():
        ...     async with Runtime(max_concurrency=64) as rt:
        ...         return await team.run("2 + 2?", runtime=rt)
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        requests_per_second: float | None = None,
        retry: RetryPolicy | None = None,
        cache: str | Path | ResponseCache | None = None,
    ) -> None:
        self.adaptive = True
        if os.environ.get("HYPERTEAM_MAX_CONCURRENCY"):
            max_concurrency = _env_int("HYPERTEAM_MAX_CONCURRENCY", 128)
            self.adaptive = False
        elif max_concurrency is None:
            max_concurrency = DEFAULT_CEILING
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.retry = retry or RetryPolicy()
        cache = cache if cache is not None else os.environ.get("HYPERTEAM_CACHE") or None
        self.cache = ResponseCache(cache) if isinstance(cache, (str, Path)) else cache
        self._endpoints: dict[tuple[str, str | None], Endpoint] = {}
        self._models: dict[str, ChatModel] = {}
        self._owned: list[Any] = []

    def own(self, resource: Any) -> None:
        """Closes ``resource`` (its ``aclose()``) when the runtime closes: e.g. a managed vLLM server."""
        self._owned.append(resource)

    def endpoint(self, base_url: str, api_key: str | None = None, *, capacity: int | None = None) -> Endpoint:
        """The shared endpoint client for ``base_url`` (created on first use).

        ``capacity``: what the server serves at once, where the caller knows it
        (a server hyperteam started); a limit the user set still wins.
        """
        key = (base_url.rstrip("/"), api_key)
        ep = self._endpoints.get(key)
        if ep is None:
            ep = Endpoint(
                base_url,
                api_key,
                max_concurrency=self.max_concurrency,
                requests_per_second=self.requests_per_second,
                retry=self.retry,
                cache=self.cache,
                adaptive=self.adaptive,
                capacity=capacity if self.adaptive else None,
            )
            self._endpoints[key] = ep
        return ep

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint used: its in-flight limit and where it came from, the peak, and notes
        such as a server that ignores ``n`` or sends no usage (see :meth:`Endpoint.stats`)."""
        return [ep.stats() for ep in self._endpoints.values()]

    def model(self, spec: str | ChatModel | None) -> ChatModel:
        """Resolves a model spec (see :func:`hyperteam.models.resolve`) against this runtime."""
        if spec is not None and not isinstance(spec, str):
            return spec
        key = spec or ""
        model = self._models.get(key)
        if model is None:
            from hyperteam.models.spec import resolve

            model = resolve(spec, runtime=self)
            self._models[key] = model
        return model

    async def aclose(self) -> None:
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            await resource.aclose()
        for ep in self._endpoints.values():
            await ep.close()
        self._endpoints.clear()
        self._models.clear()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    def current(cls) -> Runtime:
        """The default runtime of the running event loop, closed when the loop shuts down."""
        loop = asyncio.get_running_loop()
        rt = _DEFAULTS.get(loop)
        if rt is None:
            rt = _DEFAULTS[loop] = cls()
            _close_at_loop_shutdown(rt)
        return rt


def _close_at_loop_shutdown(rt: Runtime) -> None:
    # asyncio.run() finalises suspended async generators before closing the
    # loop; a generator parked on its first yield is thus a shutdown hook,
    # which lets the default runtime close its HTTP sessions cleanly.
    async def closer() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await rt.aclose()

    gen = closer()
    asyncio.get_running_loop().create_task(gen.__anext__())
    rt._closer = gen  # type: ignore[attr-defined]  # keep it alive as long as the runtime


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
