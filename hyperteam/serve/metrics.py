"""Prometheus metrics, request logs and optional OpenTelemetry spans.

Each app has its own registry (no process-global collectors), served at
``/metrics`` behind the API key like every other non-public route: the
figures reveal usage volumes. Prometheus sends the key with its scrape
config's ``authorization: {credentials: KEY}``. Labels are route templates
(``/v1/runs/{run_id}``), never raw paths, ids or content.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hyperteam.models.types import Usage

logger = logging.getLogger("hyperteam.serve.access")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The service's counters, in a registry of its own.

    Example:
        >>> m = Metrics()
        >>> m.record_call("ann-gsm8k", Usage(100, 20, 1, 0.5))
        >>> b"hyperteam_llm_calls_total" in m.render()
        True
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "hyperteam_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "hyperteam_http_request_duration_seconds",
            "HTTP request latency (to the end of the response body)",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.llm_calls = Counter("hyperteam_llm_calls", "Model calls made by served teams", ["team"], registry=r)
        self.tokens = Counter(
            "hyperteam_llm_tokens", "Tokens of served teams' model calls", ["team", "kind"], registry=r
        )
        self.runs = Counter("hyperteam_runs", "Finished runs by team and final status", ["team", "status"], registry=r)
        self.in_flight = Gauge("hyperteam_runs_in_flight", "Runs executing now", registry=r)
        self.store_failures = Counter(
            "hyperteam_store_write_failures",
            "Writes (runs, events, status updates) the run store could not store, by kind",
            ["kind"],
            registry=r,
        )
        for kind in ("run", "event", "update"):  # at 0 from the start, so that an alert can watch them
            self.store_failures.labels(kind)

    def record_call(self, team: str, usage: Usage) -> None:
        self.llm_calls.labels(team).inc(usage.calls)
        self.tokens.labels(team, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(team, "completion").inc(usage.completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``other`` (never the raw path: ids would explode the labels)."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
    return getattr(route, "path", None) or "other"


class MetricsMiddleware:
    """Counts and times every request and logs one line per request: route, method, status, time,
    owner. At INFO nothing of the request's content, query or headers is logged."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - started
            route, method = route_template(scope), scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            owner = scope.get("state", {}).get("owner")
            logger.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                elapsed * 1000,
                extra={
                    "route": route,
                    "method": method,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "owner": owner,
                },
            )


def _tracer() -> Any | None:
    """An OpenTelemetry tracer when the API is installed and an exporter is configured; else None."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter.lower() == "none" or not (exporter or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer("hyperteam.serve")


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span around a run, when OpenTelemetry is set up (see :func:`_tracer`); otherwise nothing."""
    tracer = _tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None}):
        yield
