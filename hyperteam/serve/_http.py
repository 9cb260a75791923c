"""Limits on how a client may send a request: header size and count, and the time to send it.

uvicorn's httptools protocol (the fast one, used with ``uvicorn[standard]``)
buffers a request head of any size for as long as the client takes to send
it: eight connections each sending an unfinished 32 MiB header took a
service from 125 to 444 MiB. This subclass refuses, before the application
sees anything:

* a head (request line and headers) over ``max_head_bytes``, or with more
  than ``max_headers`` headers: 431 Request Header Fields Too Large;
* a request not received whole within ``read_timeout_s`` of its first byte
  (slow clients, slowloris): 408 Request Timeout while nothing has been
  handed to the application, else the connection is closed; a connection
  that sends nothing at all is closed after the same time.

The refusal is an OpenAI-style JSON error body with ``Connection: close``;
the connection is half-closed and what the client still sends is read and
dropped for a moment, so that it gets the answer rather than a reset.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_LINGER_S = 1.0


class HttpLimits(BaseModel):
    """How large a request head may be and how long a request may take to arrive.

    Example:
        >>> HttpLimits(max_head_bytes=8192).max_headers
        100
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_head_bytes: int = Field(default=32 * 1024, ge=1024, description="request line and headers, in bytes")
    max_headers: int = Field(default=100, ge=1, description="headers per request")
    read_timeout_s: float = Field(default=30.0, gt=0, description="to receive a whole request, from its first byte")


def refusal(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with an OpenAI-style error body, closing the connection."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
        status,
        _REASONS[status],
        len(body),
    )
    return head + body


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a head over a limit (the message says which)."""


def protocol_class(limits: HttpLimits) -> Any:
    """uvicorn's httptools protocol with ``limits`` (pass it as ``uvicorn.Config(http=...)``).

    Raises:
        ImportError: httptools is not installed (use uvicorn's h11 protocol and its
            ``h11_max_incomplete_event_size`` instead).
    """
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._awaiting_head = True  # no request's headers complete yet
            self._head_bytes = 0
            self._header_count = self._parsed_bytes = 0
            self._body_pending = False  # headers complete, the app reading, the body not yet whole
            self._refused = False
            self._timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(limits.read_timeout_s, self._timed_out)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering: what the client still sends is dropped
            self._unset_keepalive_if_required()
            if self._awaiting_head:
                self._head_bytes += len(data)
                self._arm()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _Refused):
                    self._refuse(431, "headers_too_large", str(exc.__context__))
                    return
                logger.warning("invalid HTTP request received")
                self.send_400_response("Invalid HTTP request received.")
                return
            if self._awaiting_head and self._head_bytes > limits.max_head_bytes:
                self._refuse(431, "headers_too_large", f"the request head is larger than {limits.max_head_bytes} bytes")

        def on_message_begin(self) -> None:
            self._header_count = self._parsed_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            # A head that arrives whole in one read is measured here; one still arriving, by data_received.
            self._header_count += 1
            if self._header_count > limits.max_headers:
                raise _Refused(f"more than {limits.max_headers} request headers")  # stops the parser
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._parsed_bytes += size
            if self._parsed_bytes > limits.max_head_bytes:
                raise _Refused(f"the request head is larger than {limits.max_head_bytes} bytes")

        def on_headers_complete(self) -> None:
            self._awaiting_head = False
            self._head_bytes = 0
            self._body_pending = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._body_pending = False
            self._awaiting_head = True
            self._disarm()

        def _timed_out(self) -> None:
            self._timer = None
            if self._refused or self.transport.is_closing():
                return
            if self._body_pending:  # the app has the request: tell it the client is gone
                cycle = self.cycle
                if cycle is not None and not cycle.response_started:
                    cycle.disconnected = True
                    cycle.message_event.set()
                    self._refuse(
                        408, "request_timeout", f"the request was not received within {limits.read_timeout_s:g} s"
                    )
                else:
                    self.transport.close()
            elif self._head_bytes:
                self._refuse(408, "request_timeout", f"the request was not received within {limits.read_timeout_s:g} s")
            elif self.cycle is None or self.cycle.response_complete:
                self.transport.close()  # idle: nothing asked, nothing owed

        def _refuse(self, status: int, code: str, message: str) -> None:
            logger.info("refused a request: %d %s", status, code)
            self._refused = True
            self._disarm()
            self.transport.write(refusal(status, code, message))
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)

    return LimitedHttpToolsProtocol
