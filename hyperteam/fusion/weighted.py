"""Weighted voting: each agent's vote counts by the log-odds of its measured accuracy."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import first_with, is_tie, no_answer, weighted_plurality
from hyperteam.models.types import Usage

P_MIN, P_MAX = 0.01, 0.99


def log_odds(p: float) -> float:
    """``log(p / (1 - p))`` with ``p`` clipped to [0.01, 0.99], so no agent gets an infinite say."""
    p = min(max(p, P_MIN), P_MAX)
    return math.log(p / (1.0 - p))


def tally(results: Iterable[tuple[str, bool]]) -> dict[str, dict[str, int]]:
    """Per-agent counts ``{agent: {"correct": c, "total": t}}`` from (agent, correct) pairs: a stats file's content."""
    stats: dict[str, dict[str, int]] = {}
    for agent, correct in results:
        row = stats.setdefault(agent, {"correct": 0, "total": 0})
        row["correct"] += int(bool(correct))
        row["total"] += 1
    return stats


def laplace(correct: int, total: int) -> float:
    """The accuracy estimate ``(c + 1) / (t + 2)``: a uniform prior, so one lucky answer is not p = 1."""
    return (correct + 1) / (total + 2)


class WeightedVote(Fusion):
    """Votes weighted by ``log(p / (1 - p))`` of each agent's accuracy ``p`` (clipped to [0.01, 0.99]).

    This is the optimal weighting for independent voters (Nitzan & Paroush
    1982): one agent right 95% of the time outvotes two that are right 60%.
    An agent worse than chance (p < 0.5) gets a negative weight: its answer
    counts against itself.

    Accuracies come from ``accuracies``, else from ``stats_file`` (a JSON file
    ``{agent: {"correct": c, "total": t}}``, read once when the strategy is
    built, estimated with a Laplace prior ``(c + 1) / (t + 2)``), else
    ``default_accuracy``. ``weights`` sets an agent's vote weight directly and
    overrides both. Ties (equal total weight) go to the answer whose first
    vote came earliest in agent order.

    Args:
        accuracies: measured accuracy per agent name, in [0, 1].
        stats_file: path of a per-agent results file (see above).
        weights: raw vote weights per agent name, used as given.
        default_accuracy: the accuracy assumed for an agent with no record.

    Example:
        >>> fusion = WeightedVote(accuracies={"expert": 0.95, "a": 0.6, "b": 0.6})
        >>> fusion.weight("expert") > fusion.weight("a") + fusion.weight("b")
        True
    """

    name = "weighted_vote"

    accuracies: dict[str, float] = Field(default_factory=dict)
    stats_file: str | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    default_accuracy: float = Field(default=0.6, ge=0.0, le=1.0)

    _learned: dict[str, float] = PrivateAttr(default_factory=dict)

    @field_validator("accuracies")
    @classmethod
    def _in_unit_interval(cls, accuracies: dict[str, float]) -> dict[str, float]:
        for agent, p in accuracies.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"must be in [0, 1]; got {agent}={p}")
        return accuracies

    @model_validator(mode="after")
    def _load(self) -> WeightedVote:
        # Read once, when the strategy is built: a bad file is a config error before any run.
        if self.stats_file is not None:
            self._learned = _read_stats(Path(self.stats_file))
        return self

    @classmethod
    def from_results(cls, results: Iterable[tuple[str, bool]], **params: Any) -> WeightedVote:
        """A weighted vote whose accuracies are learned (Laplace prior) from (agent, correct) pairs.

        Example:
            >>> WeightedVote.from_results([("a", True), ("a", True), ("b", False)]).accuracies
            {'a': 0.75, 'b': 0.3333333333333333}
        """
        learned = {agent: laplace(s["correct"], s["total"]) for agent, s in tally(results).items()}
        return cls(accuracies={**learned, **params.pop("accuracies", {})}, **params)

    def accuracy(self, agent: str) -> float:
        """The accuracy this strategy believes ``agent`` has."""
        if agent in self.accuracies:
            return self.accuracies[agent]
        return self._learned.get(agent, self.default_accuracy)

    def weight(self, agent: str) -> float:
        """The weight of ``agent``'s vote."""
        if agent in self.weights:
            return self.weights[agent]
        return log_odds(self.accuracy(agent))

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        weights = {o.agent: round(self.weight(o.agent), 6) for o in outputs}
        winner, totals = weighted_plurality(outputs, lambda o: self.weight(o.agent))
        if winner is None:
            return no_answer(ctx.layer, self.name, outputs, weights=weights)
        chosen = first_with(outputs, winner)
        reason = f"{winner} has the most weight ({totals[winner]:.3g}; answers: {len(totals)})"
        if is_tie(totals, winner):
            reason += " (a tie, broken by agent order)"
        detail = {"votes": {a: round(w, 6) for a, w in totals.items()}, "weights": weights}
        return FusionResult(AgentOutput(f"{ctx.layer}.{self.name}", chosen.text, winner, Usage()), reason, detail)


def _read_stats(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"stats_file {str(path)!r}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"stats_file {str(path)!r}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"stats_file {str(path)!r}: expected {{agent: {{correct, total}}}}")
    learned: dict[str, float] = {}
    for agent, row in raw.items():
        try:
            correct, total = int(row["correct"]), int(row["total"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"stats_file {str(path)!r}: {agent}: needs integer 'correct' and 'total'") from None
        if not 0 <= correct <= total:
            raise ValueError(f"stats_file {str(path)!r}: {agent}: needs 0 <= correct <= total")
        learned[agent] = laplace(correct, total)
    return learned
