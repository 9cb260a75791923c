"""The simulated model as an OpenAI-compatible HTTP server, with latency, a queue and faults.

It behaves like a loaded vLLM server: at most ``max_concurrency`` requests in
service, the rest queued in arrival order, each taking time to first token
plus a time per token. Faults come at a set rate, reproducibly from the seed
and the request count (so a retried request may succeed):

- ``429`` (with ``Retry-After: 1`` and ``retry-after-ms: 1000``), ``500``,
  ``503``: answered at once, as a front end that refuses work would.
- ``drop``: the connection closes without a response.
- ``hang``: no response ever; the request holds no service slot and ends
  when the client disconnects.
- ``malformed``: a 200 after the usual service time, whose body (or stream
  event) is not valid JSON.
- ``stall`` (opt-in, not among the default kinds): a streamed answer stops
  after its first piece and never ends (an unstreamed one never comes); the
  request keeps its service slot until the client leaves, as a stuck
  generation would.

Like real servers it says how many requests it serves at once (unless
``report_slots`` is off, as llama-cpp-python's server says nothing):
llama.cpp's ``GET /props`` (``total_slots``) and vLLM's ``GET /metrics``
gauges ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``.

The request log gets one JSON line per chat request, with ``status`` the
HTTP status, ``"drop"``, ``"hang"``, or 499 when the client left first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from hyperteam.errors import ConfigError
from hyperteam.models.tokenizer import count_message_tokens
from hyperteam.models.types import ChatRequest
from hyperteam.testing.sim._http import Connection, error_body, response
from hyperteam.testing.sim._process import start_sim_subprocess, stop_sim_subprocess
from hyperteam.testing.sim._stream import Stream
from hyperteam.testing.sim._wire import HEALTH_BODY, MODELS_BODY, Request, completion_body, invalid
from hyperteam.testing.sim.brain import SimBrain
from hyperteam.testing.sim.model import LatencyModel, complete

__all__ = ["FAULT_KINDS", "SimServer", "start_sim_subprocess", "stop_sim_subprocess"]

logger = logging.getLogger(__name__)

FAULT_KINDS = ("429", "500", "503", "drop", "hang", "malformed")
OPT_IN_FAULTS = ("stall",)
_LOG_FLUSH_S = 0.1
_ERRORS = {
    "429": (b"Retry-After: 1\r\nretry-after-ms: 1000\r\n", "rate_limit_exceeded", "requests"),
    "500": (b"", "internal_error", "server_error"),
    "503": (b"", "service_unavailable", "server_error"),
}


class SimServer:
    """Serves the simulated model over HTTP (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``, ``/health``).

    Args:
        brain: decides the answers.
        latency: service time of a request; None or zero answers at once.
        max_concurrency: requests in service at once; the rest queue.
        fault_rate: probability that a request meets a fault.
        faults: the fault kinds to choose from, uniformly (``FAULT_KINDS``).
        request_log: a JSONL file that gets one line per chat request.
        log_messages: also write each request's messages in its log line (for prefix studies).
        seed: makes the fault sequence reproducible.
        report_slots: answer ``/props`` and ``/metrics`` with the slots and the queue.

    Example:
        >>> async def demo():  # doctest: +SKIP
        ...     server = SimServer(SimBrain(), latency=LatencyModel(0, 0))
        ...     await server.start()
        ...     print(server.url)  # http://127.0.0.1:PORT/v1
        ...     await server.close()
    """

    def __init__(
        self,
        brain: SimBrain,
        *,
        latency: LatencyModel | None = LatencyModel(150, 3),  # noqa: B008 - frozen, so safe to share
        max_concurrency: int = 256,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULT_KINDS,
        request_log: str | os.PathLike[str] | None = None,
        log_messages: bool = False,
        seed: int = 0,
        api_key: str | None = None,
        report_slots: bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ConfigError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        unknown = [f for f in faults if f not in FAULT_KINDS + OPT_IN_FAULTS]
        if unknown or (fault_rate > 0 and not faults):
            known = ", ".join(FAULT_KINDS + OPT_IN_FAULTS)
            raise ConfigError(f"faults must be a non-empty subset of {known}, got {list(faults)}")
        self.brain = brain
        self.latency = None if latency is None or latency.is_zero else latency
        self.max_concurrency = max_concurrency
        self.fault_rate = float(fault_rate)
        self.faults = tuple(faults)
        self.request_log = Path(request_log) if request_log is not None else None
        self.log_messages = log_messages
        self.seed = int(seed)
        self._bearer = f"Bearer {api_key}".encode() if api_key else None
        self.report_slots = report_slots
        self.host = "127.0.0.1"
        self.port = 0
        self.requests = 0
        self._in_flight = 0
        self._in_service = 0
        self._queue: deque[Request] = deque()
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_file: BinaryIO | None = None
        self._log_lines: list[bytes] = []
        self._log_timer: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def in_flight(self) -> int:
        """Chat requests at the server now: queued, in service or hanging."""
        return self._in_flight

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Starts listening; returns the port (a free one when ``port`` is 0).

        Raises:
            ConfigError: the request log cannot be opened or the port cannot be bound.
        """
        self._loop = asyncio.get_running_loop()
        try:
            self._server = await self._loop.create_server(lambda: Connection(self), host, port, backlog=4096)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e}") from None
        if self.request_log is not None:
            try:
                self._log_file = self.request_log.open("ab")
            except OSError as e:
                self._server.close()
                raise ConfigError(f"cannot open request log {self.request_log}: {e}") from None
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("simulated model serving on %s", self.url)
        return self.port

    async def close(self) -> None:
        """Stops listening, ends every open request and connection, flushes the log."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()  # first, so that ending its request does not read the next one
            if isinstance(conn.state, Request):
                self.end_request(conn.state, "hang" if conn.state.state == "hang" else 499)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._log_timer is not None:
            self._log_timer.cancel()
        self._flush_log()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- the _http.Handler protocol ---------------------------------------

    def connection_made(self, conn: Connection) -> None:
        self._connections.add(conn)

    def connection_lost(self, conn: Connection) -> None:
        self._connections.discard(conn)
        req = conn.state
        if isinstance(req, Request) and req.state != "done":
            self.end_request(req, "hang" if req.state == "hang" else 499)

    def refused(self, conn: Connection, path: bytes) -> bool:
        """Answers 401 and returns True when the server has an API key and the request lacks it
        (as vLLM's ``--api-key``: every ``/v1`` route needs it, ``/health`` does not)."""
        if self._bearer is None or not path.startswith(b"/v1/"):
            return False
        if hmac.compare_digest(conn.authorization, self._bearer):
            return False
        self._reply_error(conn, 401, "missing or wrong API key", "invalid_api_key")
        return True

    def handle(self, conn: Connection, method: bytes, path: bytes, body: bytes) -> None:
        if self.refused(conn, path):
            return
        if path == b"/v1/chat/completions":
            if method == b"POST":
                self._chat(conn, body)
                return
            self._reply_error(conn, 405, "use POST for /v1/chat/completions", "method_not_allowed")
        elif path == b"/v1/embeddings":
            if method == b"POST":
                self._embeddings(conn, body)
                return
            self._reply_error(conn, 405, "use POST for /v1/embeddings", "method_not_allowed")
        elif path in (b"/health", b"/v1/health") and method == b"GET":
            conn.write(response(200, HEALTH_BODY, keep_alive=conn.keep_alive))
            conn.finish()
        elif path == b"/v1/models" and method == b"GET":
            conn.write(response(200, MODELS_BODY, keep_alive=conn.keep_alive))
            conn.finish()
        elif path in (b"/props", b"/metrics") and method == b"GET" and self.report_slots:
            body, content_type = self._capacity(path)
            conn.write(response(200, body, content_type=content_type, keep_alive=conn.keep_alive))
            conn.finish()
        else:
            path_text = path.decode("latin-1")
            self._reply_error(conn, 404, f"unknown path {path_text}", "not_found")

    def _capacity(self, path: bytes) -> tuple[bytes, bytes]:
        """The body and content type of llama.cpp's ``/props`` or vLLM's ``/metrics``."""
        if path == b"/props":
            return orjson.dumps({"total_slots": self.max_concurrency, "simulated": True}), b"application/json"
        waiting = sum(1 for r in self._queue if r.state == "queued")
        text = (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="sim"}} {self._in_service}.0\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="sim"}} {waiting}.0\n'
        )
        return text.encode(), b"text/plain; version=0.0.4"

    # -- embeddings ----------------------------------------------------------

    def _embeddings(self, conn: Connection, body: bytes) -> None:
        # Deterministic hashing vectors (hyperteam.topologies.embed), answered at once, no faults.
        from hyperteam.models.tokenizer import count_tokens
        from hyperteam.topologies.embed import hash_embed

        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._reply_error(conn, 400, "request body is not valid JSON", "invalid_json")
            return
        texts = payload.get("input") if isinstance(payload, dict) else None
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._reply_error(
                conn, 400, "input must be a string or a non-empty list of strings", "invalid_value", param="input"
            )
            return
        dim = payload.get("dimensions", 64)
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 4096:
            self._reply_error(
                conn, 400, "dimensions must be an integer from 1 to 4096", "invalid_value", param="dimensions"
            )
            return
        tokens = sum(count_tokens(t) for t in texts)
        out = {
            "object": "list",
            "model": payload.get("model") or "sim-embed",
            "data": [{"object": "embedding", "index": i, "embedding": hash_embed(t, dim)} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        conn.write(response(200, orjson.dumps(out), keep_alive=conn.keep_alive))
        conn.finish()

    # -- chat completions --------------------------------------------------

    def _chat(self, conn: Connection, body: bytes) -> None:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._reply_error(conn, 400, "request body is not valid JSON", "invalid_json")
            return
        problem = invalid(payload)
        if problem is not None:
            self._reply_error(conn, 400, problem[1], "invalid_value", param=problem[0])
            return
        self.requests += 1
        self._in_flight += 1
        req = Request(conn, payload.get("model") or "sim")
        req.in_flight = self._in_flight
        req.id = f"chatcmpl-sim{self.requests:x}"
        req.fault = self._fault(self.requests)
        max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
        request = ChatRequest(
            messages=payload["messages"],
            temperature=payload.get("temperature"),
            max_tokens=max_tokens,
            n=payload.get("n") or 1,
            seed=payload.get("seed"),
        )
        req.prompt_tokens = count_message_tokens(request.messages)
        if self._log_file is not None:
            key = orjson.dumps(
                [req.model, request.messages, request.temperature, request.seed, request.n, max_tokens],
                option=orjson.OPT_SORT_KEYS,
            )
            req.key = hashlib.blake2b(key, digest_size=16).hexdigest()
            if self.log_messages:
                req.messages = request.messages
        conn.state = req
        if req.fault in _ERRORS:
            headers, code, type_ = _ERRORS[req.fault]
            message = f"simulated fault: HTTP {req.fault}"
            body = error_body(message, type_=type_, code=code)
            conn.write(response(int(req.fault), body, headers=headers, keep_alive=conn.keep_alive))
            self.end_request(req, int(req.fault))
            return
        if req.fault == "drop":
            conn.keep_alive = False
            self.end_request(req, "drop")
            return
        if req.fault == "hang" or (req.fault == "stall" and not payload.get("stream")):
            req.state = "hang"
            return
        req.choices = complete(self.brain, req.model, request)
        if payload.get("stream"):
            options = payload.get("stream_options")
            req.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            req.stream = Stream(req)
        if self.latency is not None:
            req.service_s = self.latency.seconds(max(tokens for _, tokens, _ in req.choices))
        if self._in_service < self.max_concurrency:
            self._serve(req)
        else:
            req.state = "queued"
            self._queue.append(req)

    def _serve(self, req: Request) -> None:
        self._in_service += 1
        req.state = "service"
        req.started_mono = time.monotonic()
        if req.stream is not None:
            req.stream.start(self)
        elif req.service_s > 0:
            assert self._loop is not None
            req.handle = self._loop.call_later(req.service_s, self._respond, req)
        else:
            self._respond(req)

    def _respond(self, req: Request) -> None:
        req.handle = None
        conn = req.conn
        if req.fault == "malformed":
            body = b'{"id": "%s", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "' % (
                req.id.encode()
            )
        else:
            body = completion_body(req)
        conn.write(response(200, body, keep_alive=conn.keep_alive))
        self.end_request(req, 200)

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        """Schedules a step of a request (streams pace their chunks with it)."""
        assert self._loop is not None
        return self._loop.call_later(delay, callback, *args)

    def end_request(self, req: Request, status: int | str) -> None:
        """Takes a request out of the server, frees its slot and logs it; idempotent."""
        if req.state == "done":
            return
        if req.handle is not None:
            req.handle.cancel()
            req.handle = None
        was_in_service = req.state == "service"
        now = time.monotonic()
        started = req.started_mono or now
        req.state = "done"
        self._in_flight -= 1
        if self._log_file is not None:
            self._log(req, status, (started - req.arrived_mono) * 1000, (now - started) * 1000)
        if was_in_service:
            self._in_service -= 1
            while self._queue and self._in_service < self.max_concurrency:
                queued = self._queue.popleft()
                if queued.state == "queued":  # requests whose client left are skipped
                    self._serve(queued)
        conn = req.conn
        if conn.state is req and not conn.closed:
            if status == "drop":
                conn.close()
            else:
                conn.finish()

    def _fault(self, counter: int) -> str | None:
        if self.fault_rate <= 0:
            return None
        digest = hashlib.blake2b(b"%d:%d" % (self.seed, counter), digest_size=16).digest()
        if int.from_bytes(digest[:8], "little") / 2**64 >= self.fault_rate:
            return None
        return self.faults[int.from_bytes(digest[8:], "little") % len(self.faults)]

    def _reply_error(self, conn: Connection, status: int, message: str, code: str, *, param: str | None = None) -> None:
        body = error_body(message, type_="invalid_request_error", code=code, param=param)
        conn.write(response(status, body, keep_alive=conn.keep_alive))
        conn.finish()

    def _log(self, req: Request, status: int | str, queue_ms: float, service_ms: float) -> None:
        entry = {
            "t": round(req.arrived, 6),
            "key": req.key,
            "model": req.model,
            "in_flight": req.in_flight,
            "status": status,
            "fault": req.fault,
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": req.completion_tokens if status == 200 else 0,
            "queue_ms": round(queue_ms, 3),
            "service_ms": round(service_ms, 3),
        }
        if req.messages is not None:
            entry["messages"] = req.messages
        self._log_lines.append(orjson.dumps(entry) + b"\n")
        if self._log_timer is None and self._loop is not None:
            self._log_timer = self._loop.call_later(_LOG_FLUSH_S, self._flush_log)

    def _flush_log(self) -> None:
        self._log_timer = None
        if self._log_lines and self._log_file is not None:
            self._log_file.write(b"".join(self._log_lines))
            self._log_file.flush()
        self._log_lines.clear()
