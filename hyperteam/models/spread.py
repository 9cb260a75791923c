"""Spreading one model's requests over several replicas (client-side load balancing).

Each request goes to the replica with the fewest requests outstanding, except
that requests sharing a prompt prefix stick to one replica while it is not
much busier than the others, so that the server's prefix cache is reused. In
hyperteam's prompt layout the prefix (system prompt, then the problem) is the
same for every agent of a problem, so a problem's agents, and an agent's
rounds, land on one replica. A replica that fails is taken out for a
cool-down that doubles with each failure, and the request is retried on
another; after the cool-down the replica gets traffic again, and one success
puts it fully back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hyperteam.errors import ConfigError, ModelError
from hyperteam.models.retry import NO_RETRY_STATUSES
from hyperteam.models.types import ChatModel, ChatRequest, ChatResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Replica:
    model: ChatModel
    index: int
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    down_until: float = 0.0


class SpreadModel:
    """One chat model served by several replicas; requests are spread over them.

    Args:
        replicas: the replicas' models (e.g. ``EndpointModel`` s of one served model).
        name: the model's name (default: the replicas' names joined by commas).
        affinity_slack: a request stays on its prefix's replica while that
            replica has at most this many more requests outstanding than the least busy one.
        prefix_chars: how much of the prompt's start decides the replica.
        cooldown_s: how long a failed replica is left out the first time; doubled per failure.
        max_cooldown_s: the longest cool-down.

    Example:
        >>> from hyperteam.models import Runtime
        >>> rt = Runtime()
        >>> model = rt.model("http://10.0.0.1:8000/v1,http://10.0.0.2:8000/v1#Qwen/Qwen2.5-7B-Instruct")
        >>> type(model).__name__, len(model.replicas)
        ('SpreadModel', 2)
    """

    def __init__(
        self,
        replicas: Sequence[ChatModel],
        *,
        name: str | None = None,
        affinity_slack: int = 4,
        prefix_chars: int = 384,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 60.0,
    ) -> None:
        if not replicas:
            raise ConfigError("a spread model needs at least one replica")
        self.replicas = [_Replica(m, i) for i, m in enumerate(replicas)]
        self.name = name or ",".join(m.name for m in replicas)
        self.affinity_slack = affinity_slack
        self.prefix_chars = prefix_chars
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s

    def affinity_key(self, request: ChatRequest) -> bytes:
        """What keeps related requests together: the start of the prompt."""
        text = "\x00".join(str(m.get("content", "")) for m in request.messages)
        return text[: self.prefix_chars].encode("utf-8", "replace")

    def pick(self, key: bytes, exclude: set[int] | frozenset[int] = frozenset()) -> _Replica:
        """The replica for a request with affinity ``key``, leaving out ``exclude``."""
        now = time.monotonic()
        pool = [r for r in self.replicas if r.index not in exclude]
        healthy = [r for r in pool if r.down_until <= now]
        if not healthy:  # all cooling down: the one back soonest gets a try
            return min(pool, key=lambda r: r.down_until)
        ranked = sorted(healthy, key=lambda r: _rendezvous(key, r.index), reverse=True)
        least = min(r.outstanding for r in ranked)
        if ranked[0].outstanding <= least + self.affinity_slack:
            return ranked[0]
        return next(r for r in ranked if r.outstanding == least)

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        """Sends the request to a replica; on a replica failure, to the next one.

        Raises:
            ModelError: every replica failed, or the request itself was refused (4xx).
        """
        key = self.affinity_key(request)
        tried: set[int] = set()
        while True:
            replica = self.pick(key, tried)
            replica.outstanding += 1
            try:
                result = await replica.model.chat(request, sample_index=sample_index)
            except ModelError as exc:
                if exc.status in NO_RETRY_STATUSES:
                    raise  # the request is wrong, not the replica
                self._fail(replica, exc)
                tried.add(replica.index)
                if len(tried) == len(self.replicas):
                    raise
                continue
            finally:
                replica.outstanding -= 1
            replica.served += 1
            if replica.failures:
                log.info("replica %s is back", replica.model.name)
                replica.failures, replica.down_until = 0, 0.0
            return result

    def _fail(self, replica: _Replica, exc: ModelError) -> None:
        replica.failures += 1
        pause = min(self.max_cooldown_s, self.cooldown_s * 2 ** (replica.failures - 1))
        replica.down_until = time.monotonic() + pause
        log.warning("replica %s failed (%s); out for %.1f s", replica.model.name, exc.kind, pause)

    def stats(self) -> list[dict[str, Any]]:
        """Per replica: its name, requests served and outstanding, and whether it is cooling down."""
        now = time.monotonic()
        return [
            {
                "name": r.model.name,
                "served": r.served,
                "outstanding": r.outstanding,
                "failures": r.failures,
                "down": r.down_until > now,
            }
            for r in self.replicas
        ]


def _rendezvous(key: bytes, index: int) -> int:
    # Highest-random-weight hashing: when a replica leaves, only its keys move.
    return int.from_bytes(hashlib.blake2b(key + b"#%d" % index, digest_size=8).digest(), "big")
