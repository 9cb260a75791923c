"""What went wrong on a minibatch: problems whose run failed (by kind), the fallbacks taken, and
per agent the replies that came back empty or cut by ``max_tokens``.

A failed problem counts as wrong, as in evals, but a step never hides it:
the step entry says how many problems failed and why, and the trainer stops
when most of a minibatch failed (an endpoint that times out on everything
must not look like a team that is always right or always wrong).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperteam.agents.messages import count_replies
from hyperteam.topologies.result import TeamResult

__all__ = ["Failures", "failure_kind", "fallbacks"]


def _kind(error: str) -> str:
    head = error.split(":", 1)[0].strip()
    return head if head and " " not in head else "error"


def failure_kind(result: TeamResult | None, error: str | None = None) -> str | None:
    """Why a problem's run failed, or None when it produced an answer.

    A run fails when it raised (``error``), or when every agent call of it
    failed (each agent's output carries an error such as ``timeout: ...``).
    """
    if result is None:
        return _kind(error or "error")
    agents = [ev for ev in result.trace if ev.kind == "agent"]
    if agents and all(ev.error for ev in agents):
        return _kind(agents[0].error or "error")
    return None


def fallbacks(results: Sequence[TeamResult | None]) -> Counter[str]:
    """How often routers and LLM aggregators fell back to a fixed choice, by ``router`` / aggregator name."""
    counts: Counter[str] = Counter()
    for result in results:
        for ev in result.trace if result is not None else ():
            if ev.detail.get("fallback"):
                counts["router" if ev.kind == "route" else str(ev.detail.get("strategy", ev.kind))] += 1
    return counts


@dataclass
class Failures:
    """Failed problems and fallbacks, counted over a run (or one step)."""

    problems: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    replies: dict[str, Counter[str]] = field(default_factory=dict)  # agent -> empty / truncated / fallback

    def add(self, kinds: Sequence[str | None], results: Sequence[TeamResult | None]) -> None:
        self.problems += len(kinds)
        self.failed.update(k for k in kinds if k is not None)
        self.fallbacks.update(fallbacks(results))
        for result in results:
            for agent, counts in count_replies(result.trace if result is not None else []).items():
                self.replies.setdefault(agent, Counter()).update(counts)

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    def describe(self) -> str:
        """``3 of 8 problems failed (timeout: 2, http_500: 1)``, or "" when none failed."""
        if not self.n_failed:
            return ""
        kinds = ", ".join(f"{k}: {n}" for k, n in self.failed.most_common())
        return f"{self.n_failed} of {self.problems} problems failed ({kinds})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "problems": self.problems,
            "failed": self.n_failed,
            "failed_by_kind": dict(self.failed),
            "fallbacks": dict(self.fallbacks),
            "replies": self.replies_dict(),
        }

    def replies_dict(self) -> dict[str, dict[str, int]]:
        """Per agent with any: how many of its replies were empty, truncated or fallbacks."""
        return {agent: dict(counts) for agent, counts in sorted(self.replies.items())}
