"""Per-endpoint limits shared by every run in the process: concurrency and request rate."""

from __future__ import annotations

import asyncio
import time


class ConcurrencyLimit:
    """At most ``limit`` requests in flight; the rest wait in FIFO order.

    ``in_flight`` and ``peak`` are exposed so that tests and reports can see
    the limit hold.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._sem = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.peak = 0

    async def __aenter__(self) -> ConcurrencyLimit:
        await self._sem.acquire()
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._sem.release()


class RateLimiter:
    """A token bucket: ``rate`` requests per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
