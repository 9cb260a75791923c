"""The HTTP agent service: served teams as OpenAI models, a runs API, health and metrics.

Middleware, outermost first: an error guard (unexpected errors become a
500 body), metrics and the request log, authentication and the per-key
rate limit, then the body-size limit; all of them act before a route
parses the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse

from hyperteam.errors import ConfigError
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel
from hyperteam.serve._json import CheckedRoute
from hyperteam.serve.auth import AuthMiddleware, KeyRing, RateLimiter, current_owner
from hyperteam.serve.errors import APIError, ErrorGuard, error_responses, install_error_handlers
from hyperteam.serve.limits import BodyLimit, Limits, max_calls
from hyperteam.serve.manager import RunManager
from hyperteam.serve.metrics import Metrics, MetricsMiddleware
from hyperteam.serve.openai_api import add_openai_routes
from hyperteam.serve.records import RunStore
from hyperteam.serve.runs import add_run_routes
from hyperteam.serve.schemas import INT_BOUNDS
from hyperteam.topologies.team import Team

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Service:
    """What the routes share, kept in ``app.state.service``."""

    teams: dict[str, Team]
    manager: RunManager
    limits: Limits
    store: RunStore
    keys: KeyRing
    metrics: Metrics
    created: int
    max_n: int = 128

    def team(self, name: str, *, param: str) -> Team:
        team = self.teams.get(name)
        if team is None:  # the name asked for is not echoed
            raise APIError(
                404,
                f"no such {param}; served teams: {', '.join(self.teams)} (see /v1/models)",
                param=param,
                code="model_not_found",
            )
        return team

    def check_n(self, n: int) -> None:
        """Refuses ``n`` above what the fan-out limit allows for every served team (the schema's maximum)."""
        if n > self.max_n:
            raise APIError(
                400,
                f"n={n} exceeds the fan-out limit of {self.limits.max_fanout} calls per request: at most "
                f"{self.max_n} runs (the costliest served team makes up to {max_team_calls(self.teams)} calls each)",
                param="n",
                code="fanout_limit_exceeded",
            )


def max_team_calls(teams: dict[str, Team]) -> int:
    return max(max_calls(team) for team in teams.values())


def create_app(
    teams: dict[str, Team],
    *,
    store: RunStore,
    api_keys: list[str] | None,
    runtime: Runtime | None = None,
    model: str | ChatModel | None = None,
    limits: Limits | None = None,
    rate_limit: float | None = None,
    shutdown_grace_s: float = 30.0,
) -> FastAPI:
    """The service's FastAPI app.

    Args:
        teams: the served teams by name; each is a model of the OpenAI API.
        store: where runs and their events persist (see ``hyperteam.serve.store.open_store``).
        api_keys: accepted bearer keys; None or empty leaves the service open (a warning is logged).
        runtime: the clients and limits shared by every run; default: one owned by the app.
        model: the model for agents that name none.
        limits: request limits (body size, messages, prompt length, fan-out).
        rate_limit: requests a second per API key (bursts of ``max(1, rate)``); None: no limit.
        shutdown_grace_s: how long runs may go on after shutdown begins before they are interrupted.

    Example:
        >>> app = create_app({"single": load_team("single")}, store=open_store(":memory:"),
        ...                  api_keys=["sk-..."], model="sim:0.8")  # doctest: +SKIP
        >>> uvicorn.run(app)  # doctest: +SKIP
    """
    if not teams:
        raise ConfigError("create_app: no teams to serve")
    limits = limits or Limits()
    keys = KeyRing(api_keys)
    metrics = Metrics()
    manager = RunManager(teams, store, runtime=runtime, model=model, metrics=metrics)
    # n is bounded for all teams alike, so that the schema can say the bound.
    max_n = min(128, limits.max_fanout // max_team_calls(teams))
    service = Service(dict(teams), manager, limits, store, keys, metrics, int(time.time()), max_n)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.open:
            logger.warning("no API keys configured: the service is OPEN to anyone who can reach it")
        owned = None
        if manager.runtime is None:
            owned = manager.runtime = Runtime()
        await manager.startup()
        logger.info("serving %d team(s): %s", len(teams), ", ".join(teams))
        try:
            yield
        finally:
            await manager.shutdown(shutdown_grace_s)
            if owned is not None:
                await owned.aclose()
                manager.runtime = None

    app = FastAPI(
        title="hyperteam",
        summary="Agent teams served as OpenAI-compatible models, with a runs API for long work.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = service
    app.router.route_class = CheckedRoute  # JSON bodies are parsed and checked before any route sees them
    install_error_handlers(app)
    add_openai_routes(app, list(teams))
    add_run_routes(app)

    @app.get("/health", tags=["operations"], responses={503: {"description": "Shutting down"}})
    async def health() -> JSONResponse:
        """Liveness and readiness (no key needed): 503 once shutdown has begun."""
        if not manager.accepting:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}}
        | error_responses(),
        dependencies=[Depends(current_owner)],
    )
    async def prometheus() -> Response:
        """Prometheus metrics: requests by route and status, latency, model calls, tokens, runs in flight."""
        return Response(metrics.render(), media_type=metrics.content_type)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _limits_in_schema(FastAPI.openapi(app), limits, max(1, max_n))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=keys, limiter=RateLimiter(rate_limit) if rate_limit else None)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(ErrorGuard)
    return app


def _limits_in_schema(schema: dict[str, Any], limits: Limits, max_n: int) -> dict[str, Any]:
    """The schema with this app's limits in it: the most messages, and ``n``'s bound."""
    shapes = schema["components"]["schemas"]
    chat = shapes["ChatCompletionRequest"]["properties"]
    for name, (low, high) in {**INT_BOUNDS, "n": (1, max_n)}.items():
        for option in chat[name].get("anyOf", [chat[name]]):
            if option.get("type") == "integer":
                option["minimum"], option["maximum"] = low, high
    chat["messages"]["maxItems"] = limits.max_messages
    for option in shapes["RunCreate"]["properties"]["input"]["anyOf"]:
        if option.get("type") == "array":
            option["maxItems"] = limits.max_messages
    return schema
