"""Voting over normalised answers: plain and weighted tallies, and the majority-vote strategy.

The helpers here are shared by every strategy that votes or falls back to a
vote, so that they all ignore the same outputs and break ties the same way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.models.types import Usage


def voters(outputs: Sequence[AgentOutput]) -> list[AgentOutput]:
    """The outputs that may vote: no error, and an answer."""
    return [o for o in outputs if o.ok and o.answer is not None]


def plurality(outputs: Sequence[AgentOutput]) -> tuple[str | None, dict[str, int]]:
    """The most frequent answer and the vote counts.

    Ties go to the answer whose first vote came earliest in agent order, so
    the result does not depend on completion timing.
    """
    votes = Counter(o.answer for o in voters(outputs))
    if not votes:
        return None, {}
    top = max(votes.values())
    return _earliest(outputs, lambda a: votes[a] == top), dict(votes)


def weighted_plurality(
    outputs: Sequence[AgentOutput], weight: Callable[[AgentOutput], float]
) -> tuple[str | None, dict[str, float]]:
    """The answer with the largest total weight, and the totals.

    Ties (totals equal to 1e-9) go to the answer whose first vote came
    earliest in agent order, as in :func:`plurality`.

    Example:
        >>> outs = [AgentOutput("a", "", "1"), AgentOutput("b", "", "2"), AgentOutput("c", "", "2")]
        >>> weighted_plurality(outs, lambda o: 3.0 if o.agent == "a" else 1.0)
        ('1', {'1': 3.0, '2': 2.0})
    """
    totals: dict[str, float] = {}
    for o in voters(outputs):
        totals[o.answer] = totals.get(o.answer, 0.0) + weight(o)
    if not totals:
        return None, {}
    top = max(totals.values())
    return _earliest(outputs, lambda a: math.isclose(totals[a], top, rel_tol=1e-9, abs_tol=1e-9)), totals


def _earliest(outputs: Sequence[AgentOutput], is_top: Callable[[str], bool]) -> str:
    for o in voters(outputs):
        if is_top(o.answer):
            return o.answer
    raise AssertionError("unreachable: a top answer exists")


def is_tie(tally: dict[str, Any], winner: str) -> bool:
    """Whether another answer has the winner's tally."""
    return sum(math.isclose(v, tally[winner], rel_tol=1e-9, abs_tol=1e-9) for v in tally.values()) > 1


def first_with(outputs: Sequence[AgentOutput], answer: str) -> AgentOutput:
    """The first output (in agent order) that voted for ``answer``."""
    return next(o for o in voters(outputs) if o.answer == answer)


def no_answer(layer: str, tag: str, outputs: Sequence[AgentOutput], **detail: Any) -> FusionResult:
    """The result when nothing can be voted on: answer None, and why (never an exception)."""
    ok = [o for o in outputs if o.ok]
    if not outputs:
        reason = "no outputs to fuse"
    else:
        reason = "no agent gave an answer" if ok else "every agent failed"
    text = ok[0].text if ok else ""
    return FusionResult(AgentOutput(f"{layer}.{tag}", text, None, Usage()), reason, {"votes": {}, **detail})


def majority_fallback(
    layer: str, tag: str, outputs: Sequence[AgentOutput], why: str, *, usage: Usage | None = None, **detail: Any
) -> FusionResult:
    """A majority vote standing in for a strategy that could not decide, saying why.

    ``usage`` is what the failed attempt cost (e.g. an unparseable selector call).
    """
    winner, votes = plurality(outputs)
    if winner is None:
        result = no_answer(layer, tag, outputs, fallback="majority_vote", **detail)
        result.output.usage = usage or Usage()
        result.reason = f"{why}; fell back to majority vote: {result.reason}"
        return result
    chosen = first_with(outputs, winner)
    return FusionResult(
        AgentOutput(f"{layer}.{tag}", chosen.text, winner, usage or Usage()),
        f"{why}; fell back to majority vote ({votes[winner]} of {sum(votes.values())} on {winner})",
        {"fallback": "majority_vote", "votes": votes, **detail},
    )


class MajorityVote(Fusion):
    """The answer most agents gave (answers normalised first: ``$1,000.00`` == ``1000``).

    The fused text is the first solution that reached the winning answer, so
    a later layer reads a real derivation, not a bare number. Failed outputs
    and outputs without an answer do not vote; ties go to the answer whose
    first vote came earliest in agent order.

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion="majority_vote")
    """

    name = "majority_vote"

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        winner, votes = plurality(outputs)
        if winner is None:
            return no_answer(ctx.layer, "vote", outputs)
        chosen = first_with(outputs, winner)
        reason = f"{votes[winner]} of {sum(votes.values())} answers agree on {winner}"
        if is_tie(votes, winner):
            reason += " (a tie, broken by agent order)"
        return FusionResult(AgentOutput(f"{ctx.layer}.vote", chosen.text, winner, Usage()), reason, {"votes": votes})
