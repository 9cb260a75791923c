"""Adaptive fusion: learned per-source reliability selects the sources and weights their votes."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from hyperteam.agents._numbers import normalize_number
from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import first_with, is_tie, no_answer, voters, weighted_plurality
from hyperteam.models.types import Usage


class Adaptive(Fusion):
    """Keeps the ``top_k`` most reliable sources that answered and weights their votes by reliability.

    The inference-time counterpart of Kong et al. (2025)'s adaptive source
    selection and dynamic weighted fusion. Each source (agent) has a
    reliability score in [0, 1], stored in the ``scores`` field so that it is
    saved with the team spec; an agent with no score has ``default_score``.

    Selection: among the outputs that have an answer, the ``top_k`` with the
    highest scores (equal scores: earlier agent first). Fusion: each selected
    answer counts by its agent's score; ties go to the answer whose first vote
    came earliest in agent order.

    Learning: :meth:`feedback` moves each source's score toward whether it was
    right, an exponential moving average ``s <- s + learning_rate * (1[correct] - s)``.
    An average that forgets, rather than a Beta posterior mean that weighs all
    history alike, because sources drift (an optimizer rewrites prompts, an
    endpoint changes models) and one number per source keeps the spec plain.
    A source that failed or gave no answer counts as wrong: it did not help.
    Strategies are frozen like every fusion, so ``feedback`` returns a new
    instance; put its :meth:`spec` back on the layer.

    Args:
        scores: reliability per agent name, in [0, 1].
        top_k: how many sources vote.
        default_score: the reliability of an agent with no score.
        learning_rate: the step of the moving average, in (0, 1].

    Example:
        >>> fusion = Adaptive(scores={"a": 0.5, "b": 0.5})
        >>> fusion = fusion.feedback([AgentOutput("a", "", "4"), AgentOutput("b", "", "5")], gold="4")
        >>> fusion.scores
        {'a': 0.6, 'b': 0.4}
        >>> layer.fusion = fusion.spec()  # doctest: +SKIP
    """

    name = "adaptive"

    scores: dict[str, float] = Field(default_factory=dict)
    top_k: int = Field(default=3, ge=1)
    default_score: float = Field(default=0.5, ge=0.0, le=1.0)
    learning_rate: float = Field(default=0.2, gt=0.0, le=1.0)

    @field_validator("scores")
    @classmethod
    def _in_unit_interval(cls, scores: dict[str, float]) -> dict[str, float]:
        for agent, s in scores.items():
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"must be in [0, 1]; got {agent}={s}")
        return scores

    def reliability(self, agent: str) -> float:
        """The reliability score of ``agent``."""
        return self.scores.get(agent, self.default_score)

    def select(self, outputs: Sequence[AgentOutput]) -> list[AgentOutput]:
        """The ``top_k`` most reliable outputs with an answer, in agent order."""
        usable = voters(outputs)
        ranked = sorted(range(len(usable)), key=lambda i: (-self.reliability(usable[i].agent), i))
        keep = sorted(ranked[: self.top_k])
        return [usable[i] for i in keep]

    def feedback(
        self, outputs: Sequence[AgentOutput | TraceEvent], gold: str | int | float, *, layer: str | None = None
    ) -> Adaptive:
        """A copy whose scores moved toward each source's correctness on one scored example.

        Args:
            outputs: the layer's agent outputs on the example, or a run's trace (its agent events count).
            gold: the right answer; numbers are normalised like answers (``"1,000"`` == ``1000``).
            layer: with a trace, only this layer's agent events count.
        """
        target = normalize_number(gold) or str(gold).strip()
        scores = dict(self.scores)
        for o in outputs:
            if isinstance(o, TraceEvent) and (o.kind != "agent" or (layer is not None and o.layer != layer)):
                continue
            right = 1.0 if o.error is None and o.answer == target else 0.0
            old = scores.get(o.agent, self.default_score)
            scores[o.agent] = round(old + self.learning_rate * (right - old), 12)
        return type(self)(**{**self.model_dump(), "scores": scores})

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        chosen_sources = self.select(outputs)
        detail = {
            "scores": {o.agent: self.reliability(o.agent) for o in outputs},
            "selected": [o.agent for o in chosen_sources],
        }
        winner, totals = weighted_plurality(chosen_sources, lambda o: self.reliability(o.agent))
        if winner is None:
            return no_answer(ctx.layer, self.name, outputs, **detail)
        chosen = first_with(chosen_sources, winner)
        names = ", ".join(detail["selected"])
        reason = f"{winner} has the most reliability-weighted votes ({totals[winner]:.3g}) among {names}"
        if is_tie(totals, winner):
            reason += " (a tie, broken by agent order)"
        detail["votes"] = {a: round(w, 6) for a, w in totals.items()}
        output = AgentOutput(f"{ctx.layer}.{self.name}", chosen.text, winner, Usage())
        return FusionResult(output, reason, detail)
