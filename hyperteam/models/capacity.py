"""How many requests a server serves at once: asked of the server where it says, else learned.

Probed once per endpoint, before its first request, each probe bounded by a
short timeout:

- llama.cpp's server answers ``GET /props`` with ``total_slots`` (and
  ``GET /slots`` with one entry per slot): that is the capacity.
- vLLM answers ``GET /metrics`` with the gauges ``vllm:num_requests_running``
  and ``vllm:num_requests_waiting``: while requests are in flight they are
  read every second, and a queue at the server brings the limit down to what
  runs (what the server batches); no queue while the client holds requests
  back raises it.
- Anything else (llama-cpp-python's server, OpenAI) says nothing: the limit is
  learned by AIMD on queueing delay and overload (see
  :class:`hyperteam.models.limits.AdaptiveLimit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, Protocol

import orjson

from hyperteam.models.limits import AdaptiveLimit

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
METRICS_INTERVAL_S = 1.0
# Where a server says nothing, the first requests go out one at a time: a
# one-slot CPU server (llama-cpp-python's) never queues a team's whole fan-out.
ADAPTIVE_START = 1
_GAUGE = re.compile(rb"^vllm:num_requests_(running|waiting)(?:\{[^}]*\})?\s+([0-9.eE+-]+)", re.MULTILINE)


class _Sender(Protocol):
    async def send(
        self, method: str, path: str, body: bytes = b"", *, timeout_s: float | None = None, root: bool = False
    ) -> tuple[int, Any, bytes, float | None]: ...


async def _get(transport: _Sender, path: str) -> bytes | None:
    try:
        status, _, data, _ = await transport.send("GET", path, timeout_s=PROBE_TIMEOUT_S, root=True)
    except (OSError, TimeoutError, ValueError):
        return None
    except Exception:  # an odd server must not break the first request
        log.debug("capacity probe %s failed", path, exc_info=True)
        return None
    return data if status == 200 else None


def slots_from_props(data: bytes) -> int | None:
    """``total_slots`` of a llama.cpp ``/props`` body, if there is one."""
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
        props = orjson.loads(data)
        slots = props.get("total_slots") if isinstance(props, dict) else None
        if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1:
            return slots
    return None


def vllm_gauges(data: bytes) -> tuple[float, float] | None:
    """``(running, waiting)`` summed over models, from a Prometheus ``/metrics`` body; None without them."""
    found: dict[bytes, float] = {}
    for name, value in _GAUGE.findall(data):
        with contextlib.suppress(ValueError):
            found[name] = found.get(name, 0.0) + float(value)
    if b"running" not in found:
        return None
    return found[b"running"], found.get(b"waiting", 0.0)


async def discover(transport: _Sender, limit: AdaptiveLimit, *, url: str) -> str:
    """Sets ``limit`` from what the server says; returns the mode: ``server``, ``metrics`` or ``adaptive``."""
    props, slots, metrics = await asyncio.gather(
        _get(transport, "/props"), _get(transport, "/slots"), _get(transport, "/metrics")
    )
    n = slots_from_props(props) if props is not None else None
    if n is None and slots is not None:
        with contextlib.suppress(orjson.JSONDecodeError):
            listed = orjson.loads(slots)
            n = len(listed) if isinstance(listed, list) and listed else None
    if n is not None:
        limit.set_capacity(n, "server")
        log.info("%s serves %d requests at once (its /props); at most %d in flight", url, n, limit.limit)
        return "server"
    if metrics is not None and vllm_gauges(metrics) is not None:
        limit.set_capacity(limit.ceiling, "metrics")
        log.info("%s reports its queue (/metrics): in flight follows it, at most %d", url, limit.ceiling)
        return "metrics"
    limit.set_capacity(ADAPTIVE_START, "adaptive")
    log.info("%s does not say how many requests it serves at once: learning it (AIMD)", url)
    return "adaptive"


async def follow_metrics(transport: _Sender, limit: AdaptiveLimit, *, interval_s: float = METRICS_INTERVAL_S) -> None:
    """Keeps ``limit`` at what a vLLM server runs at once, from its queue gauges (runs until cancelled)."""
    while True:
        await asyncio.sleep(interval_s)
        if limit.in_flight == 0:
            continue
        data = await _get(transport, "/metrics")
        gauges = vllm_gauges(data) if data is not None else None
        if gauges is None:
            continue
        running, waiting = gauges
        if waiting > 0 and limit.in_flight > running:
            limit.set_capacity(max(1, int(running)), "metrics")
            limit.cuts += 1
        elif waiting == 0 and limit.waiting and limit.in_flight >= limit.limit:
            limit.set_capacity(limit.limit + max(1, limit.limit // 8), "metrics")
