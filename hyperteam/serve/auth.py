"""Bearer API keys and per-key rate limits.

Keys are kept only as SHA-256 digests, compared with ``hmac.compare_digest``
against every stored digest (no early exit), and never logged or echoed. A
run's owner is a short hash derived from the key's digest, stable across
restarts, so that a key sees its own runs and no other's.

Authentication and rate limiting happen in one middleware, before routing
reads the body: an unauthenticated or throttled client costs no parsing.
Public paths: ``/health`` and the API description (``/openapi.json``,
``/docs``, ``/redoc``), which holds no secrets and which clients and
test tools need. Everything else, ``/metrics`` included, needs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperteam.errors import ConfigError
from hyperteam.serve.errors import APIError, error_response

ANONYMOUS = "anonymous"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class KeyRing:
    """The accepted API keys, as digests.

    Example:
        >>> ring = KeyRing(["sk-one"])
        >>> ring.owner("Bearer sk-one") == ring.owner("Bearer sk-one") != None
        True
        >>> ring.owner("Bearer wrong") is None
        True
    """

    def __init__(self, keys: Iterable[str] | None = None) -> None:
        digests = []
        for key in keys or ():
            if not isinstance(key, str) or not key.strip():
                raise ConfigError("API keys must be non-empty strings")
            digests.append(hashlib.sha256(key.strip().encode()).digest())
        self._digests = digests

    @property
    def open(self) -> bool:
        """True when no key is configured: every request is let in, as ``anonymous``."""
        return not self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def owner(self, authorization: str | None) -> str | None:
        """The owner id for an ``Authorization`` header value, or None if it carries no valid key."""
        if self.open:
            return ANONYMOUS
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for stored in self._digests:
            if hmac.compare_digest(stored, digest):
                found = stored
        if found is None:
            return None
        return "key_" + hashlib.sha256(b"hyperteam-owner:" + found).hexdigest()[:20]


class RateLimiter:
    """A token bucket per owner: ``rate`` requests a second, bursts of ``burst`` (default ``max(1, rate)``).

    Example:
        >>> limiter = RateLimiter(1.0, clock=lambda: 0.0)
        >>> limiter.acquire("a"), limiter.acquire("a") > 0
        (0.0, True)
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ConfigError(f"rate limit must be > 0 requests a second, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, owner: str) -> float:
        """Takes one token: returns 0.0 if allowed, else the seconds until a token is available."""
        now = self._clock()
        tokens, last = self._buckets.get(owner, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[owner] = (tokens - 1.0, now)
            return 0.0
        self._buckets[owner] = (tokens, now)
        return (1.0 - tokens) / self.rate


class AuthMiddleware:
    """Checks the bearer key and the owner's rate limit; puts the owner in ``request.state.owner``."""

    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        owner = self.keys.owner(header)
        if owner is None:
            message = "missing API key: send 'Authorization: Bearer KEY'" if not header else "invalid API key"
            response = error_response(
                401,
                message,
                type="invalid_request_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        if self.limiter is not None:
            wait = self.limiter.acquire(owner)
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                response = error_response(
                    429,
                    f"rate limit exceeded ({self.limiter.rate:g} requests/s per key); retry after {retry} s",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": retry},
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="An API key of this service (`Authorization: Bearer KEY`).")


# async on purpose: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop on every request.
async def current_owner(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The authenticated owner of the request (the bearer dependency documents the scheme in OpenAPI)."""
    owner = getattr(request.state, "owner", None)
    if owner is None:  # a route reached without the middleware: refuse rather than guess
        raise APIError(401, "missing API key", code="invalid_api_key")
    return owner
