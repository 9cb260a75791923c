"""What every model server hyperteam starts shares: the child process, readiness, sharing, the first call.

A backend (vLLM, llama.cpp) subclasses :class:`ServerProcess` with its
command line; the rest is here. Ready means a real chat completion came back,
not only ``/health`` (vLLM answers that before the model can serve). The child
runs in its own process group with its output in a private log file, and is
stopped with SIGTERM then SIGKILL when the server is stopped, when the
interpreter exits (Ctrl-C included) and, on Linux, when the parent process
dies (even by ``kill -9``).

:class:`Shared` keeps one running server per model and options in a process,
counted by its users; :func:`hold_servers` keeps them running between users
(a command whose steps each open and close a runtime starts each server once);
:class:`ManagedModel` is the chat model of a spec such as ``vllm:ORG/MODEL``,
whose first request waits until the server answers.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import orjson

from hyperteam.backends._process import free_port, spawn, stop_group, tail
from hyperteam.errors import HyperteamError
from hyperteam.models.types import ChatModel, ChatRequest, ChatResult

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


class ServerStartError(HyperteamError):
    """A model server exited or did not answer a completion in time; the message ends with its log tail."""


class ServerProcess:
    """One model-server child process: start it, wait until a completion works, stop it.

    Subclasses set ``engine`` (for messages), ``probe_timeout_s`` and
    ``stop_grace_s``, and give :meth:`argv`, ``served_name`` and ``label``;
    they may extend :meth:`child_env` and :meth:`spawn_error`. ``options``
    needs ``host``, ``api_key`` and ``startup_timeout_s``.
    """

    engine: ClassVar[str] = "model server"
    probe_timeout_s: ClassVar[float] = 30.0
    stop_grace_s: ClassVar[float] = 30.0
    poll_s: ClassVar[float] = 0.5

    def __init__(self, options: Any, *, port: int | None, log_file: str | os.PathLike[str] | None = None) -> None:
        self.options = options
        self.port = port
        self.log_file = Path(log_file) if log_file is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self._lock = threading.Lock()

    # -- what a backend gives ------------------------------------------------------

    @property
    def served_name(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """What the server serves, for messages (a model id, a GGUF file name)."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        return dict(os.environ)

    def spawn_error(self, exc: OSError) -> str:
        return f"cannot start the {self.engine} server: {exc}"

    # -- shared --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (the port is known once started)."""
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"http://{host}:{self.port}/v1"

    @property
    def spec(self) -> str:
        """The model spec that reaches this server: ``http://HOST:PORT/v1#NAME``."""
        return f"{self.base_url}#{self.served_name}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> ServerProcess:
        """Starts the child process and returns at once; :meth:`wait_ready` waits for it."""
        if self.proc is not None:
            return self
        if self.port is None:
            self.port = free_port(self.options.host if self.options.host != "0.0.0.0" else "127.0.0.1")
        if self.log_file is None:
            # Per user and private: the command line (with the API key) may be logged.
            slug = self.engine.lower().replace(".", "")
            folder = Path(tempfile.gettempdir()) / f"hyperteam-{slug}-{os.getuid()}"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.log_file = folder / f"{self.served_name.replace('/', '_')}-{self.port}.log"
        argv = self.argv()
        log.info("starting %s for %s on port %s (log %s)", self.engine, self.label, self.port, self.log_file)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as out:
            try:
                self.proc = spawn(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.child_env(),
                    start_new_session=True,  # our own group: Ctrl-C reaches us, and we stop the whole group
                )
            except OSError as exc:
                raise ServerStartError(self.spawn_error(exc)) from None
        _LIVE.add(self)
        return self

    def wait_ready(self, timeout_s: float | None = None) -> ServerProcess:
        """Blocks until a one-token chat completion succeeds.

        Raises:
            ServerStartError: the server exited, or gave no completion within the timeout;
                the message holds the last lines of its log. A server that timed out is stopped.
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
                    log.info("%s for %s ready at %s", self.engine, self.label, self.base_url)
                    return self
                time.sleep(0.1 if "refused" in last else self.poll_s)

    def _probe(self) -> str:
        """'' when a real completion works, else why not."""
        headers = {"Content-Type": "application/json"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        body = {
            "model": self.served_name,
            "messages": [{"role": "user", "content": "Reply with OK."}],
            "max_tokens": 1,
            "temperature": 0,
        }
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=orjson.dumps(body), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.probe_timeout_s) as response:
                payload = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return f"completion answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"connection {'refused' if isinstance(reason, ConnectionRefusedError) else 'failed'}: {reason}"
        except orjson.JSONDecodeError:
            return "completion body is not JSON"
        if not isinstance(payload, dict) or not payload.get("choices"):
            return "completion has no choices"
        return ""

    def failure_report(self, what: str) -> str:
        logs = tail(self.log_file) if self.log_file is not None else ""
        shown = "\n".join("    " + line for line in logs.splitlines()) or "    (no output)"
        where = f"{self.engine} server for {self.label} on port {self.port}"
        return f"{where} {what}; last log lines ({self.log_file}):\n{shown}"

    def stop(self, grace_s: float | None = None) -> int | None:
        """Stops the server (SIGTERM, then SIGKILL after ``grace_s``); returns its exit code. Idempotent."""
        proc, self.ready = self.proc, False
        if proc is None:
            return None
        code = stop_group(proc, grace_s=self.stop_grace_s if grace_s is None else grace_s)
        _LIVE.discard(self)
        log.info("%s for %s on port %s stopped (exit %s)", self.engine, self.label, self.port, code)
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Any:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "ready" if self.ready else "running" if self.running() else "stopped"
        return f"{type(self).__name__}({self.label!r}, port={self.port}, {state})"


@atexit.register
def _stop_all() -> None:
    # Normal exit and Ctrl-C (KeyboardInterrupt unwinds to here); kill -9 is
    # covered by the parent-death signal instead.
    for server in list(_LIVE):
        server.stop(grace_s=min(10.0, server.stop_grace_s))


class Startable(Protocol):
    """A server or a group of replicas: started at once, ready later, stopped together."""

    @property
    def ready(self) -> bool: ...

    def start(self) -> Any: ...

    def wait_ready(self, timeout_s: float | None = None) -> Any: ...

    def running(self) -> bool: ...

    def stop(self) -> Any: ...


S = TypeVar("S", bound=Startable)


_HOLD = threading.Lock()  # guards _holds
_holds = 0
_SHARED: weakref.WeakSet[Shared[Any]] = weakref.WeakSet()


@contextmanager
def hold_servers() -> Iterator[None]:
    """Keeps every server hyperteam starts running while the block lasts, even with no user.

    Without it a server stops when its last runtime closes, so code that opens
    and closes runtimes in turn (``asyncio.run`` per step) would start a vLLM
    server per step. On leaving the (outermost) block, servers nobody uses stop.

    Example:
        >>> with hold_servers():  # doctest: +SKIP
        ...     for batch in batches:
        ...         asyncio.run(evaluate(team, batch, model="vllm:Qwen/Qwen2.5-7B-Instruct"))
    """
    global _holds
    with _HOLD:
        _holds += 1
    try:
        yield
    finally:
        with _HOLD:
            _holds -= 1
            last = _holds == 0
        if last:
            for shared in list(_SHARED):
                shared.stop_unused()


class Shared(Generic[S]):
    """One running server per key (model and options) in a process, stopped when its last user leaves
    (or, inside :func:`hold_servers`, when the hold ends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[S, int]] = {}
        _SHARED.add(self)

    def acquire(self, key: Hashable, make: Callable[[], S]) -> S:
        """The running server for ``key``, made and started on first use (or anew, where one a hold
        kept for no user has died since: a crash is not the rest of the command's fate)."""
        with self._lock:
            held = self._entries.get(key)
            if held is not None and held[1] <= 0 and not held[0].running():
                held[0].stop()
                held = None
            server, users = held or (make().start(), 0)
            self._entries[key] = (server, users + 1)
            return server

    def release(self, server: S) -> None:
        """One user less; the last one stops the server."""
        with self._lock:
            key = next((k for k, (s, _) in self._entries.items() if s is server), None)
            if key is None:
                return
            users = self._entries[key][1] - 1
            if users > 0 or _holds:
                self._entries[key] = (server, users)  # held: the next user finds it running
                return
            del self._entries[key]
        server.stop()

    def stop_unused(self) -> None:
        """Stops the servers no one uses (left running by a hold)."""
        with self._lock:
            unused = [k for k, (_, users) in self._entries.items() if users <= 0]
            servers = [self._entries.pop(k)[0] for k in unused]
        for server in servers:
            server.stop()


class ManagedModel(Generic[S]):
    """A chat model on servers hyperteam started; the first request waits until they answer.

    Args:
        server: the server (or group of replicas) behind ``inner``.
        inner: the chat model that reaches it.
        shared: where ``server`` came from; closing the model releases it there.
        name: the spec, for messages.
    """

    def __init__(self, server: S, inner: ChatModel, *, shared: Shared[S], name: str) -> None:
        self.server = server
        self.inner = inner
        self.name = name
        self._shared = shared
        self._ready_lock = asyncio.Lock()
        self._failure: ServerStartError | None = None
        self._closed = False

    def prepare(self, request: ChatRequest) -> ChatRequest:
        """A backend's chance to fill in what its server needs (llama.cpp: a default ``max_tokens``)."""
        return request

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        """Waits for the servers on the first call, then answers through them.

        Raises:
            ServerStartError: the servers did not start (every later call says so at once).
            ModelError: the call failed.
        """
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
        return await self.inner.chat(self.prepare(request), sample_index=sample_index)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._shared.release, self.server)
