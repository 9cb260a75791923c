"""OpenAI-style error bodies, ``{"error": {"message", "type", "param", "code"}}``, for every error.

FastAPI's own errors (validation 422s, unknown routes, wrong methods) are
rewritten into the same shape, so that an OpenAI client reports each one
with its message, and nothing of the request is echoed back beyond the
name of the offending parameter.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}
# Every error body has a code: these are the defaults where a route names none.
_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    422: "invalid_value",
    429: "rate_limit_exceeded",
    431: "headers_too_large",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str = Field(description="a stable, machine-readable name of the error")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class APIError(HTTPException):
    """An error answered with an OpenAI-style body.

    Example:
        >>> APIError(404, "no model 'x'", param="model", code="model_not_found").body()["error"]
        {'message': "no model 'x'", 'type': 'invalid_request_error', 'param': 'model', 'code': 'model_not_found'}
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.message = message
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.param = param
        self.code = code if code is not None else _CODES.get(status, "error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def error_response(status: int, message: str, **kwargs: Any) -> JSONResponse:
    return APIError(status, message, **kwargs).response()


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


_DESCRIPTIONS = {
    400: "Unsupported parameter or value",
    401: "Missing or wrong API key",
    404: "No such model, team or run",
    409: "Conflict with the run's state or an earlier request",
    413: "Request body too large",
    422: "Invalid request (shape, message count, prompt length)",
    429: "Rate limit exceeded; see Retry-After",
    500: "Internal error",
    502: "The team's model endpoint failed",
    503: "The service is shutting down",
}


def error_responses(*extra: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a protected route: the errors every route can give, plus ``extra``."""
    return _responses(*sorted({401, 413, 422, 429, *extra}))


_MAX_PARAM = 64


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    if len(loc) > 1 and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]  # where it was is clear from the name
    param = ".".join(loc)[:_MAX_PARAM] or None  # a key the client made up is echoed only this far
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install_error_handlers(app: FastAPI) -> None:
    """Makes every error of ``app`` an OpenAI-style JSON body."""

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, APIError):
            return exc.response()
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "no such route (see /openapi.json)"  # the path is not echoed
        return error_response(exc.status_code, message, headers=exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return error_response(422, message, param=param)

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


class ErrorGuard:
    """The outermost middleware: an unexpected exception becomes a 500 body; its text is not logged
    above DEBUG (exception messages can quote a request's content)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"))
            logger.debug("unhandled error", exc_info=True)
            if not started:
                await error_response(500, "internal error")(scope, receive, send)
