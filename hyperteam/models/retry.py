"""When to retry a failed call, and how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Client errors that retrying cannot fix: the request itself is wrong.
NO_RETRY_STATUSES = frozenset({400, 401, 403, 404, 409, 413, 422})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries with capped exponential backoff and full jitter, and when to give up on a call.

    A call is judged by its progress, not by a fixed total time: requests are
    streamed, and a call is cut once nothing has arrived for ``stall_s``
    (tokens; for a call still waiting for its first token, the same
    server's other answers arriving or finishing: it is busy and the queue
    moves). A slow answer that keeps coming is never cut unless
    ``timeout_s`` is set.

    Attributes:
        max_attempts: attempts in all, the first one included.
        base_delay_s: the first backoff; it doubles with each attempt.
        max_delay_s: no single wait is longer.
        timeout_s: an optional deadline of one call, all attempts and waits
            included (default None: none).
        stall_s: the no-progress bound (default 60 s).
    """

    max_attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    timeout_s: float | None = None
    stall_s: float | None = 60.0

    def retryable(self, status: int | None) -> bool:
        """Whether a failure with this HTTP status (None: no response) is worth another try."""
        return status is None or status not in NO_RETRY_STATUSES

    def backoff(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1``; the server's Retry-After wins."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        delay = rng.uniform(0, cap)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds form only), if present."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    sec = headers.get("retry-after")
    if sec is not None:
        try:
            return max(0.0, float(sec))
        except ValueError:
            return None  # An HTTP date: rare from LLM servers; fall back to our own backoff.
    return None
