"""Best-of-n: a judge model scores every candidate and the best one is returned."""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion._parse import parse_scores, tagged_line
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.select import ask_chooser, open_choice
from hyperteam.fusion.vote import majority_fallback
from hyperteam.prompts import render


class Judge(Fusion):
    """A judge model scores each candidate from 0 to ``max_score``; the best is returned verbatim.

    One call scores every candidate: the judge compares them side by side
    (relative grading is steadier than n separate absolute grades), pays for
    the problem once instead of n times, and the layer's cost stays one call
    whatever n is. The judge must end with a line ``Scores: s1, s2, ...``, one
    number per candidate in [0, max_score]; a missing, short or out-of-range
    line, or a failed call, falls back to a majority vote, recorded in
    ``reason`` and ``detail["fallback"]``. A single candidate is passed
    through without a call.

    Ties between top scores go to the candidate whose answer more candidates
    share (so equal grades defer to the majority), then to the earliest in
    agent order.

    Args:
        model: the judge's model spec; None is the team's default model.
        criteria: what the judge grades, completing "judging ...".
        max_score: the top of the scale.
        temperature: the judge's sampling temperature (None: the server's default).

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion={"name": "judge", "model": "openai:gpt-4o"})
    """

    name = "judge"

    model: str | None = None
    criteria: str = "the correctness of the final answer and the soundness of the reasoning"
    max_score: int = Field(default=10, ge=1)
    temperature: float | None = None

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        pool, seen, early = open_choice(ctx.layer, self.name, outputs)
        if early is not None:
            return early
        prompt = render("fusion", "judge", task=task, outputs=pool, criteria=self.criteria, max_score=self.max_score)
        result = await ask_chooser(self, ctx, prompt, pool, seen, "judge")
        if isinstance(result, FusionResult):
            return result
        tag = f"{ctx.layer}.{self.name}"
        line = tagged_line(result.text, "Scores")
        scores = parse_scores(line, len(pool), self.max_score)
        if scores is None:
            why = (
                "judge gave no scores"
                if line is None
                else f"judge's scores {line!r} are not {len(pool)} in 0..{self.max_score}"
            )
            return majority_fallback(
                ctx.layer, self.name, pool, why, usage=result.usage, judge=result.text[-500:], **seen
            )
        support = Counter(o.answer for o in pool if o.answer is not None)
        best = max(range(len(pool)), key=lambda i: (scores[i], support.get(pool[i].answer, 0), -i))
        chosen = pool[best]
        reason = f"the judge scored {chosen.agent} highest ({scores[best]:g} of {self.max_score})"
        if scores.count(scores[best]) > 1:
            reason += " (a tie, broken by support for its answer, then agent order)"
        return FusionResult(
            AgentOutput(tag, chosen.text, chosen.answer, result.usage),
            reason,
            {"scores": {o.agent: s for o, s in zip(pool, scores, strict=True)}, "chosen": chosen.agent, **seen},
        )
