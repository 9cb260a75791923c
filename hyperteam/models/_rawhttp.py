"""A minimal HTTP/1.1 keep-alive client for plain-HTTP endpoints (vLLM, SGLang, the simulator).

Why it exists: at hundreds of calls in flight, aiohttp's per-request
machinery cost about 0.25 ms of CPU per call on the 2-core dev machines, a
third of the client's whole budget. This client does one write and one
parse per call. It speaks only what OpenAI-compatible servers answer with:
``Content-Length`` or chunked bodies, keep-alive, and ``Connection: close``.
HTTPS endpoints go through aiohttp (``transport.py``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit


class ConnectionFailed(ConnectionError):
    """The connection failed or closed before a whole response arrived.

    ``midway``: the response had begun (its head arrived) when it was cut.
    """

    def __init__(self, message: str, *, midway: bool = False) -> None:
        super().__init__(message)
        self.midway = midway


class Stalled(TimeoutError):
    """Nothing arrived for longer than the no-progress bound (the connection is dropped)."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(f"no progress for {idle_s:.3g} s")
        self.idle_s = idle_s


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self, server_progress: list[float] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        # Shared by the connections to one server: when any of its answers last moved.
        self.server_progress = server_progress if server_progress is not None else [0.0]
        self.waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self.buf = bytearray()
        self.closed = False
        self.got_bytes = False
        self.progress_at = 0.0  # loop time of the last progress: body bytes, or an SSE data event
        self.first_data_at = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body_len: int | None = None
        self.chunked = False
        self.close_after = False
        self.head_done = False
        self.event_stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.head_done and self.body_len is None and not self.chunked:
                self._finish(bytes(self.buf))  # a body delimited by the connection's end
            else:
                message = str(exc) if exc else "connection closed by the server"
                self.waiter.set_exception(ConnectionFailed(message, midway=self.head_done))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.buf += data
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(self.buf[:end]))
            del self.buf[: end + 4]
        # A head alone is no progress (servers send it before a request leaves their
        # queue), nor are keep-alive comments (": ping"): they say the server lives.
        if self.buf and (not self.event_stream or b"data:" in data):
            now = asyncio.get_running_loop().time()
            self.progress_at = self.server_progress[0] = now
            if not self.first_data_at:
                self.first_data_at = now
        if self.chunked:
            # A chunked body ends with the last chunk, "0\r\n\r\n" (or trailers then a blank line):
            # parse only then, not at every piece of a stream.
            if self.buf.endswith(b"\r\n\r\n"):
                body = self._dechunk()
                if body is not None:
                    self._finish(body)
        elif self.body_len is not None and len(self.buf) >= self.body_len:
            body = bytes(self.buf[: self.body_len])
            del self.buf[: self.body_len]
            self._finish(body)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.head_done = True
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            self.chunked = True
        elif "content-length" in self.headers:
            self.body_len = int(self.headers["content-length"])
        self.close_after = self.headers.get("connection", "").lower() == "close"
        self.event_stream = "text/event-stream" in self.headers.get("content-type", "")

    def _dechunk(self) -> bytes | None:
        body = bytearray()
        pos = 0
        while True:
            eol = self.buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(self.buf[pos:eol]).split(b";", 1)[0], 16)
            start = eol + 2
            if size == 0:
                end = self.buf.find(b"\r\n\r\n", eol)  # the last chunk, then optional trailers
                if end < 0 and self.buf[start : start + 2] != b"\r\n":
                    return None
                del self.buf[:]
                return bytes(body)
            if len(self.buf) < start + size + 2:
                return None
            body += self.buf[start : start + size]
            pos = start + size + 2

    def _finish(self, body: bytes) -> None:
        waiter, result = self.waiter, (self.status, self.headers, body)
        self.waiter = None
        reuse_ok = not self.close_after
        self._reset()
        if not reuse_ok and self.transport is not None:
            self.transport.close()
            self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_result(result)


class RawHttpTransport:
    """POSTs JSON to one ``http://`` base URL over pooled keep-alive connections.

    Same interface as :class:`hyperteam.models.transport.HttpTransport`.
    """

    def __init__(self, base_url: str, api_key: str | None, *, max_connections: int = 256) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"RawHttpTransport needs an http:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path
        netloc = parts.netloc.rsplit("@", 1)[-1]
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._head = f"Host: {netloc}\r\nContent-Type: application/json\r\nAccept: application/json\r\n{auth}"
        self.progress = [0.0]  # loop time any answer from this server last moved
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._max = max_connections

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(self.progress), self._host, self._port)
        self._all.add(conn)
        return conn

    async def post(self, path: str, body: bytes, *, timeout_s: float) -> tuple[int, Mapping[str, str], bytes]:
        """POST ``body``; returns status, lower-cased headers and the body.

        A reused connection that the server had already closed is retried
        once on a fresh one, since nothing reached the server.

        Raises:
            TimeoutError: the deadline passed (the connection is dropped).
            ConnectionError: the connection failed.
        """
        status, headers, data, _ = await self.send("POST", path, body, timeout_s=timeout_s)
        return status, headers, data

    async def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        timeout_s: float | None = None,
        stall_s: float | None = None,
        moved: Callable[[], float] | None = None,
        root: bool = False,
    ) -> tuple[int, dict[str, str], bytes, float | None]:
        """Sends one request; returns status, lower-cased headers, the body and the
        seconds from sending to the first data (an SSE ``data:`` event, or the body).

        Args:
            timeout_s: a deadline for the whole exchange (None: none).
            stall_s: the no-progress bound: the call is cut when nothing arrived
                for this long (keep-alive comments do not count).
            moved: the loop time the caller's queue last moved (e.g. another
                call to the same server finished): progress too, for a call
                that has had no byte yet, as are the server's other answers arriving.
            root: ``path`` is from the server's root, not from the base URL's path.

        Raises:
            TimeoutError: the deadline passed (the connection is dropped).
            Stalled: no progress within ``stall_s``.
            ConnectionError: the connection failed.
        """
        prefix = "" if root else self._prefix
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        request = f"{method} {prefix}{path} HTTP/1.1\r\n{self._head}{length}\r\n".encode() + body
        async with asyncio.timeout(timeout_s):
            while True:
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                try:
                    return await self._exchange(conn, request, stall_s, moved)
                except ConnectionFailed:
                    if not (reused and not conn.got_bytes):
                        raise

    async def _exchange(
        self, conn: _Connection, request: bytes, stall_s: float | None = None, moved: Callable[[], float] | None = None
    ) -> tuple[int, dict[str, str], bytes, float | None]:
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            self._all.discard(conn)
            raise ConnectionFailed("stale connection")
        loop = asyncio.get_running_loop()
        conn.got_bytes = False
        conn.waiter = waiter = loop.create_future()
        conn.progress_at = sent_at = loop.time()
        conn.first_data_at = 0.0
        conn.transport.write(request)
        watchdog = None
        if stall_s is not None:

            def check() -> None:
                nonlocal watchdog
                if waiter.done():
                    return
                last = conn.progress_at
                if not conn.first_data_at:  # still waiting: the server's other answers moving is progress
                    last = max(last, conn.server_progress[0], moved() if moved is not None else 0.0)
                idle = loop.time() - last
                if idle >= stall_s:
                    waiter.set_exception(Stalled(idle))
                else:
                    watchdog = loop.call_later(stall_s - idle, check)

            watchdog = loop.call_later(stall_s, check)
        try:
            status, headers, data = await waiter
        except BaseException:
            # Timed out, cancelled or failed: the connection's state is unknown, so drop it.
            conn.transport.close()
            self._all.discard(conn)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        first = conn.first_data_at - sent_at if conn.first_data_at else None
        if conn.closed:
            self._all.discard(conn)
        elif len(self._idle) < self._max:
            self._idle.append(conn)
        else:
            conn.transport.close()
            self._all.discard(conn)
        return status, headers, data, first

    async def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
