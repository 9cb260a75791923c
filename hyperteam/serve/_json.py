"""Request bodies parsed and checked before any work: every value in them can be stored and sent on.

Python's ``json`` accepts what the rest of the service cannot take: integers
of any size (orjson, the run stores and SQLite stop at 64 bits), lone UTF-16
surrogates (``"\\ud800"``: not encodable as UTF-8, so neither storable nor
sendable to a model), ``NaN`` and ``Infinity`` (not JSON at all), and nesting
deep enough to exhaust the stack. One such value used to fail the store's
batched write and with it other clients' runs; here it is a 400 that names
the field, before a route sees the body.

:class:`CheckedRoute` makes FastAPI parse every JSON body this way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from hyperteam.serve.errors import APIError

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_DEPTH = 32  # the API's own shapes nest 5 deep (messages[i].content[j].text)


class _NonFinite:
    """What ``NaN``/``Infinity`` parse to, so that the check can name the field they are in."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _BigInt:
    """An integer literal too long to be in range (parsed lazily: Python limits int() to 4,300 digits)."""

    __slots__ = ()


def _parse_int(text: str) -> int | _BigInt:
    return _BigInt() if len(text) > 20 else int(text)


def _where(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "body"


def _refuse(path: list[str | int], what: str, code: str) -> APIError:
    where = _where(path)
    return APIError(400, f"{where}: {what}", param=None if where == "body" else where, code=code)


def _check_text(text: str, path: list[str | int]) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(
                path, "a lone UTF-16 surrogate is not text (it cannot be stored or sent)", "invalid_unicode"
            ) from None


def check_value(value: Any) -> None:
    """Raises a 400 :class:`APIError` naming the first value the service cannot store or send.

    Integers must fit in signed 64 bits, strings (keys too) must be valid
    Unicode, numbers finite, and nesting at most :data:`MAX_DEPTH` deep.

    Example:
        >>> check_value({"seed": 2**64})
        Traceback (most recent call last):
        ...
        hyperteam.serve.errors.APIError: 400: seed: integer out of range (signed 64-bit)
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise _refuse(path, "integer out of range (signed 64-bit)", "integer_out_of_range")
        elif isinstance(item, _BigInt):
            raise _refuse(path, "integer out of range (signed 64-bit)", "integer_out_of_range")
        elif isinstance(item, _NonFinite):
            raise _refuse(path, f"{item.text} is not a JSON number", "invalid_number")
        elif len(path) >= MAX_DEPTH:
            raise _refuse(path, f"nested more than {MAX_DEPTH} levels deep", "nesting_too_deep")
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_text(key, path)
                stack.append((sub, [*path, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*path, i]) for i, sub in enumerate(item))


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body, checked by :func:`check_value`.

    Raises:
        APIError: 400 for invalid UTF-8, nesting too deep, or a value :func:`check_value` refuses.
        json.JSONDecodeError: the body is not JSON (FastAPI answers 422 ``the request body is not valid JSON``).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(400, "the request body is not valid UTF-8", code="invalid_utf8") from None
    try:
        value = json.loads(text, parse_constant=_NonFinite, parse_int=_parse_int)
    except RecursionError:
        raise _refuse([], f"nested more than {MAX_DEPTH} levels deep", "nesting_too_deep") from None
    check_value(value)
    return value


class _CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_body(await self.body())
        return self._json


class CheckedRoute(APIRoute):
    """An API route whose JSON body is parsed by :func:`parse_body` (FastAPI re-raises its APIErrors)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(_CheckedRequest(request.scope, request.receive, request._send))

        return checked


class FastJSONResponse(JSONResponse):
    """A JSON response rendered by orjson: the service's answers, several times faster to write than
    Starlette's ``json.dumps`` (a few percent of the service's CPU per chat completion). FastAPI's own
    ``ORJSONResponse`` is deprecated (it warns on every response)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
