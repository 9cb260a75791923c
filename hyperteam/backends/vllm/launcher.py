"""One ``vllm serve`` child process: start it, wait until it answers, stop it.

Ready means a real chat completion came back, not only ``/health``: vLLM
answers ``/health`` before the model can serve a request. The child runs in
its own process group with its output in a log file, and is stopped with
SIGTERM then SIGKILL when the server is stopped, when the interpreter exits
(Ctrl-C included) and, on Linux, when the parent process dies (even by
``kill -9``).
"""

from __future__ import annotations

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
from pathlib import Path

import orjson

from hyperteam.backends.vllm._process import free_port, spawn, stop_group, tail
from hyperteam.backends.vllm.options import VLLMOptions
from hyperteam.errors import HyperteamError

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[VLLMServer] = weakref.WeakSet()


class ServerStartError(HyperteamError):
    """A vLLM server exited or did not answer a completion in time; the message ends with its log tail."""


class VLLMServer:
    """A ``vllm serve`` child process for one model.

    Args:
        model: a Hugging Face id or a local model folder.
        options: the flags; see :class:`VLLMOptions`.
        port: the port; None picks a free one.
        devices: ``CUDA_VISIBLE_DEVICES`` for this server (None: inherited).
        log_file: where the server's output goes (default: a file under the temp folder).

    Example:
        >>> with VLLMServer("Qwen/Qwen2.5-7B-Instruct", VLLMOptions(max_num_seqs=128)) as server:  # doctest: +SKIP
        ...     print(server.spec)  # http://127.0.0.1:PORT/v1#Qwen/Qwen2.5-7B-Instruct
    """

    def __init__(
        self,
        model: str,
        options: VLLMOptions | None = None,
        *,
        port: int | None = None,
        devices: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.options = options or VLLMOptions()
        self.port = port
        self.devices = devices
        self.log_file = Path(log_file) if log_file is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self._lock = threading.Lock()

    @property
    def served_name(self) -> str:
        return self.options.served_name(self.model)

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

    def start(self) -> VLLMServer:
        """Starts the child process and returns at once; :meth:`wait_ready` waits for it."""
        if self.proc is not None:
            return self
        if self.port is None:
            self.port = free_port(self.options.host if self.options.host != "0.0.0.0" else "127.0.0.1")
        if self.log_file is None:
            # Per user and private: the command line (with --api-key) may be logged.
            folder = Path(tempfile.gettempdir()) / f"hyperteam-vllm-{os.getuid()}"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            safe = self.served_name.replace("/", "_")
            self.log_file = folder / f"{safe}-{self.port}.log"
        argv = [*self.options.command(), "serve", *self.options.serve_args(self.model, port=self.port)]
        env = dict(os.environ)
        if self.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.devices
        log.info("starting vLLM for %s on port %s (log %s)", self.model, self.port, self.log_file)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as out:
            try:
                self.proc = spawn(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # our own group: Ctrl-C reaches us, and we stop the whole group
                )
            except OSError as exc:
                raise ServerStartError(
                    f"cannot start vLLM ({argv[0]}): {exc}; install it with pip install 'hyperteam[vllm]' "
                    f"or point --vllm-bin / HYPERTEAM_VLLM_BIN at it"
                ) from None
        _LIVE.add(self)
        return self

    def wait_ready(self, timeout_s: float | None = None) -> VLLMServer:
        """Blocks until a one-token chat completion succeeds.

        Raises:
            ServerStartError: the server exited, or gave no completion within the timeout;
                the message holds the last lines of its log. A server that timed out is stopped.
        """
        with self._lock:
            if self.ready:
                return self
            if self.proc is None:
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
                    log.info("vLLM for %s ready at %s", self.model, self.base_url)
                    return self
                time.sleep(0.1 if "refused" in last else 0.5)

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
            with urllib.request.urlopen(request, timeout=30) as response:
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
        return f"vLLM server for {self.model} on port {self.port} {what}; last log lines ({self.log_file}):\n{shown}"

    def stop(self, grace_s: float = 30.0) -> int | None:
        """Stops the server (SIGTERM, then SIGKILL after ``grace_s``); returns its exit code. Idempotent."""
        proc, self.ready = self.proc, False
        if proc is None:
            return None
        code = stop_group(proc, grace_s=grace_s)
        _LIVE.discard(self)
        log.info("vLLM for %s on port %s stopped (exit %s)", self.model, self.port, code)
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> VLLMServer:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "ready" if self.ready else "running" if self.running() else "stopped"
        return f"VLLMServer({self.model!r}, port={self.port}, {state})"


@atexit.register
def _stop_all() -> None:
    # Normal exit and Ctrl-C (KeyboardInterrupt unwinds to here); kill -9 is
    # covered by the parent-death signal instead.
    for server in list(_LIVE):
        server.stop(grace_s=10.0)
