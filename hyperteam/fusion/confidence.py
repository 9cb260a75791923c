"""Confidence-weighted voting: each answer counts by how sure its model was, from token logprobs."""

from __future__ import annotations

import math

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import first_with, is_tie, majority_fallback, no_answer, voters, weighted_plurality
from hyperteam.models.types import Usage


def confidence(output: AgentOutput) -> float | None:
    """``exp(mean token logprob)`` of the completion (the geometric-mean token probability), or None.

    The mean, not the sum, so that a long careful derivation is not less
    "confident" than a short guess.
    """
    if not output.logprobs:
        return None
    return math.exp(sum(output.logprobs) / len(output.logprobs))


class ConfidenceVote(Fusion):
    """Answers weighted by their agents' confidence, ``exp(mean token logprob)`` of each completion.

    The layer's agents are asked for logprobs. Where any voting output has
    none (a server that does not return them), confidences are not comparable,
    so the strategy falls back to a plain majority vote and says so in
    ``reason`` and ``detail["fallback"]``. Ties (equal total confidence) go to
    the answer whose first vote came earliest in agent order.

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion="confidence_vote")
    """

    name = "confidence_vote"
    needs_logprobs = True

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        votes = voters(outputs)
        if not votes:
            return no_answer(ctx.layer, self.name, outputs)
        missing = [o.agent for o in votes if confidence(o) is None]
        if missing:
            return majority_fallback(
                ctx.layer, self.name, outputs, f"no logprobs from {', '.join(missing)}", missing_logprobs=missing
            )
        confidences = {o.agent: round(confidence(o) or 0.0, 6) for o in votes}
        winner, totals = weighted_plurality(outputs, lambda o: confidence(o) or 0.0)
        if winner is None:  # unreachable: there are voters; kept for the type checker
            return no_answer(ctx.layer, self.name, outputs)
        chosen = first_with(outputs, winner)
        reason = f"{winner} has the most confidence ({totals[winner]:.3g} of {sum(totals.values()):.3g})"
        if is_tie(totals, winner):
            reason += " (a tie, broken by agent order)"
        detail = {"votes": {a: round(c, 6) for a, c in totals.items()}, "confidences": confidences}
        return FusionResult(AgentOutput(f"{ctx.layer}.{self.name}", chosen.text, winner, Usage()), reason, detail)
