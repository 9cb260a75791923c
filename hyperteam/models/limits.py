"""Per-endpoint limits shared by every run in the process: concurrency and request rate."""

from __future__ import annotations

import asyncio
import time
from collections import deque


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


class AdaptiveLimit:
    """At most ``limit`` requests in flight, where ``limit`` follows what the server can serve.

    ``ceiling`` is never exceeded. Beneath it the limit is set from what the
    server says (:meth:`set_capacity`: llama.cpp's slots, vLLM's queue gauges)
    or, where it says nothing, found by AIMD (:meth:`observe`): a reply whose
    first token came much later than the fastest one seen waited in the
    server's queue, and a timeout or a 429 means overload; both halve the limit
    (once per round trip). Replies that did not wait while requests waited in
    the client raise it, a step judged by a whole window of replies sent after
    the last one: by a quarter until the server first queued, then by one
    after a few windows (a probe). Requests over the limit wait here, in the
    client, in FIFO order, where waiting costs no deadline.

    Attributes:
        limit: requests allowed in flight now.
        source: where ``limit`` comes from: ``"user"`` (fixed), ``"server"``,
            ``"metrics"`` or ``"adaptive"``.
        in_flight, peak: requests in flight now, and the most at once.
    """

    def __init__(self, ceiling: int, *, start: int | None = None, source: str = "user") -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be >= 1")
        self.ceiling = ceiling
        self.limit = max(1, min(ceiling, start or ceiling))
        self.source = source
        self.in_flight = 0
        self.peak = 0
        self.cuts = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._fastest = float("inf")
        self._typical: float | None = None
        self._last_cut = float("-inf")
        self._last_change = float("-inf")
        self._threshold = float("inf")
        self._credit = 0

    @property
    def waiting(self) -> int:
        """Requests waiting in the client for a slot."""
        return sum(1 for f in self._waiters if not f.done())

    async def __aenter__(self) -> AdaptiveLimit:
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return self
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # granted as we were cancelled: hand the slot on
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _take(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    def set_capacity(self, capacity: int, source: str) -> None:
        """The server said how many requests it serves at once."""
        self.limit = max(1, min(self.ceiling, capacity))
        self.source = source
        self._wake()

    def observe(self, *, sent_at: float, now: float, first_byte_s: float | None, overloaded: bool = False) -> None:
        """Adapts the limit to one finished request (``source == "adaptive"`` only).

        Args:
            sent_at: when the request was sent (loop time).
            now: the loop time now.
            first_byte_s: seconds from sending to the first data, where known (streams).
            overloaded: the request timed out, stalled or was refused with 429/503.
        """
        if self.source != "adaptive":
            return
        queued = False
        if first_byte_s is not None:
            total = now - sent_at
            self._typical = total if self._typical is None else 0.8 * self._typical + 0.2 * total
            # Waiting in a queue costs about a whole answer of the request ahead;
            # the first data of a request served at once comes at a fraction of that.
            queued = first_byte_s > 2.0 * self._fastest + _QUEUE_SHARE * self._typical
            self._fastest = min(self._fastest, first_byte_s)
        if queued or overloaded:
            if sent_at >= self._last_cut:  # one cut per round trip, not one per queued reply
                self.limit = max(1, self.limit // 2)
                self._threshold = self.limit
                self._last_cut = self._last_change = now
                self._credit = 0
                self.cuts += 1
            return
        if self.limit >= self.ceiling or (self.in_flight < self.limit and not self._waiters):
            return  # the limit was not what held us back: no evidence that more would fit
        if sent_at < self._last_change:
            return  # sent before the last step: says nothing about it
        # A step up is judged by a whole window of replies sent after it, none of which waited.
        self._credit += 1
        if self._credit < self.limit * (1 if self.limit < self._threshold else _PROBE_EVERY):
            return
        self.limit += max(1, self.limit // 4) if self.limit < self._threshold else 1
        self.limit = min(self.limit, self.ceiling)
        self._last_change = now
        self._credit = 0
        self._wake()


# A reply whose first data came later than twice the fastest one plus this
# share of a typical answer's time waited in the server's queue.
_QUEUE_SHARE = 0.25
# Past the level that last overloaded the server, one more request in flight
# is tried after this many round trips without queueing.
_PROBE_EVERY = 4
