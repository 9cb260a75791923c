"""A minimal HTTP/1.1 server protocol on ``asyncio.Protocol``: just enough for OpenAI clients.

It reads a request line, headers and a ``Content-Length`` body, keeps
connections alive, and hands each request to a handler. A framework would
cost several times the CPU per request, and the simulator shares its cores
with the client it is benchmarking.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


class Handler(Protocol):
    """What the protocol calls: one method per complete request, one per lost connection."""

    def handle(self, conn: Connection, method: bytes, path: bytes, body: bytes) -> None: ...

    def connection_made(self, conn: Connection) -> None: ...

    def connection_lost(self, conn: Connection) -> None: ...


def response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: bytes = b"",
    keep_alive: bool = True,
) -> bytes:
    """Returns a whole HTTP/1.1 response with a ``Content-Length`` body.

    ``headers`` are extra header lines, each ending in CRLF.
    """
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
        status,
        _REASONS.get(status, b"Unknown"),
        content_type,
        len(body),
        headers,
        b"" if keep_alive else b"Connection: close\r\n",
        body,
    )


def error_body(message: str, *, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    """Returns an OpenAI-style error body."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def stream_head() -> bytes:
    """Returns the head of a chunked ``text/event-stream`` response."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    """Frames ``data`` as one HTTP chunk (an empty ``data`` ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Connection(asyncio.Protocol):
    """One client connection. Requests are handled one at a time, in order.

    Attributes:
        transport: the socket transport (None before the connection is made).
        keep_alive: whether the current request allows another on this connection.
        busy: set by the handler while it owes a response; bytes that arrive
            meanwhile wait in the buffer.
        state: free for the handler (the request in progress).
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True
        self.busy = False
        self.closed = False
        self.state: Any = None
        self.authorization = b""  # the current request's Authorization header
        self._buffer = bytearray()
        self._parsing = False
        self._sent_continue = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.handler.connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.handler.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.busy:
            self._parse()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def finish(self) -> None:
        """Marks the current response complete: closes, or reads the next request."""
        self.busy = False
        self.state = None
        if not self.keep_alive:
            self.close()
        elif self._buffer and not self._parsing:
            self._parse()

    def reject(self, status: int, message: str) -> None:
        """Answers with an error and closes: the stream cannot be resynchronised."""
        self.write(response(status, error_body(message, type_="invalid_request_error"), keep_alive=False))
        self._buffer.clear()
        self.keep_alive = False
        self.close()

    def _parse(self) -> None:
        self._parsing = True
        try:
            while self._buffer and not self.busy and not self.closed and self.keep_alive:
                if not self._parse_one():
                    return
        finally:
            self._parsing = False

    def _parse_one(self) -> bool:
        """Handles one buffered request; returns False when more bytes are needed."""
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                self.reject(431, "request headers too large")
            return False
        lines = bytes(buf[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self.reject(400, "malformed request line")
            return False
        length = 0
        connection = b""
        expect = False
        self.authorization = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    self.reject(400, "invalid Content-Length")
                    return False
            elif name == b"transfer-encoding":
                self.reject(411, "chunked request bodies are not supported; send Content-Length")
                return False
            elif name == b"connection":
                connection = value.strip().lower()
            elif name == b"authorization":
                self.authorization = value.strip()
            elif name == b"expect":
                expect = b"100-continue" in value.lower()
        if length > MAX_BODY_BYTES:
            self.reject(413, f"request body over {MAX_BODY_BYTES} bytes")
            return False
        total = end + 4 + length
        if len(buf) < total:
            if expect and not self._sent_continue:
                self._sent_continue = True
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        self._sent_continue = False
        if version == b"HTTP/1.1":
            self.keep_alive = connection != b"close"
        else:
            self.keep_alive = connection == b"keep-alive"
        self.busy = True
        try:
            self.handler.handle(self, method, target.split(b"?", 1)[0], body)
        except Exception:
            # A bug in a handler must not leave the client waiting forever.
            logger.exception("simulated server failed on %s %s", method, target)
            self.write(response(500, error_body("internal error", type_="server_error"), keep_alive=False))
            self.keep_alive = False
            self.finish()
        return True
