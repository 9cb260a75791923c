"""Majority voting over normalised answers."""

from __future__ import annotations

from collections import Counter

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.models.types import Usage


def plurality(outputs: list[AgentOutput]) -> tuple[str | None, dict[str, int]]:
    """The most frequent answer and the vote counts.

    Ties go to the answer whose first vote came earliest in agent order, so
    the result does not depend on completion timing.
    """
    votes = Counter(o.answer for o in outputs if o.ok and o.answer is not None)
    if not votes:
        return None, {}
    top = max(votes.values())
    for o in outputs:
        if o.ok and o.answer is not None and votes[o.answer] == top:
            return o.answer, dict(votes)
    raise AssertionError("unreachable: a top answer exists")


class MajorityVote(Fusion):
    """The answer most agents gave (answers normalised first: ``$1,000.00`` == ``1000``).

    The fused text is the first solution that reached the winning answer, so
    a later layer reads a real derivation, not a bare number.
    """

    name = "majority_vote"

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        winner, votes = plurality(outputs)
        ok = [o for o in outputs if o.ok]
        if winner is None:
            text = ok[0].text if ok else ""
            return FusionResult(
                AgentOutput(f"{ctx.layer}.vote", text, None, Usage()),
                "no agent gave an answer" if ok else "every agent failed",
                {"votes": {}},
            )
        chosen = next(o for o in outputs if o.ok and o.answer == winner)
        n_ok = sum(votes.values())
        reason = f"{votes[winner]} of {n_ok} answers agree on {winner}"
        if list(votes.values()).count(votes[winner]) > 1:
            reason += " (a tie, broken by agent order)"
        return FusionResult(AgentOutput(f"{ctx.layer}.vote", chosen.text, winner, Usage()), reason, {"votes": votes})
