"""Ranked voting: every agent ranks the distinct candidate answers; Borda points decide."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ConfigError
from hyperteam.fusion._parse import parse_ranking, tagged_line
from hyperteam.fusion.base import AgentCall, Fusion, FusionContext, FusionResult, prompt_messages
from hyperteam.fusion.vote import first_with, majority_fallback, no_answer, voters
from hyperteam.models.types import Usage
from hyperteam.prompts import render

if TYPE_CHECKING:
    from hyperteam.agents.agent import Agent


def borda(rankings: list[list[int]], n: int) -> list[int]:
    """Borda points of ``n`` candidates: in each ranking (best first) place ``i`` earns ``n - 1 - i``.

    Example:
        >>> borda([[0, 1, 2], [1, 0, 2], [1, 2, 0]], 3)
        [3, 5, 1]
    """
    points = [0] * n
    for ranking in rankings:
        for place, candidate in enumerate(ranking):
            points[candidate] += n - 1 - place
    return points


class RankedVote(Fusion):
    """Each agent ranks the distinct answers of the layer; the Borda count picks the winner.

    The candidates are the distinct normalised answers, in order of first
    appearance (agent order), each shown with the first solution that reached
    it. Every agent of the layer, through its own model, answers a ranking
    prompt ending in ``Ranking: 2 > 1 > 3``; a ranking that is missing or is
    not a full permutation is skipped and recorded in ``detail["skipped"]``.
    With no usable ranking the strategy falls back to a majority vote. If every
    output agrees there is nothing to rank, and no call is made.

    Ties in Borda points go to the answer with more first-round votes, then to
    the one whose first vote came earliest in agent order.

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion="ranked_vote")
    """

    name = "ranked_vote"

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        votes = Counter(o.answer for o in voters(outputs))
        if not votes:
            return no_answer(ctx.layer, self.name, outputs)
        reps = [first_with(outputs, answer) for answer in votes]  # Counter keeps first-seen (agent) order
        answers = [o.answer for o in reps]
        tag = f"{ctx.layer}.{self.name}"
        if len(reps) == 1:
            only = reps[0]
            return FusionResult(
                AgentOutput(tag, only.text, only.answer, Usage()),
                f"every answer is {only.answer}: nothing to rank",
                {"candidates": answers, "votes": dict(votes)},
            )
        call = ctx.call_agent
        if call is None or not ctx.agents:
            raise ConfigError(f"fusion 'ranked_vote' at {ctx.layer!r} needs to call agents, but this team cannot")
        replies = await asyncio.gather(*(_rank(call, agent, task, reps) for agent in ctx.agents))
        events, rankings, skipped = [], {}, {}
        for (prompt, out), agent in zip(replies, ctx.agents, strict=True):
            ranking = parse_ranking(tagged_line(out.text, "Ranking"), len(reps)) if out.ok else None
            if ranking is None:
                skipped[agent.name] = out.error or "no full ranking"
            else:
                rankings[agent.name] = ranking
            detail = {"ranking": [answers[i] for i in ranking]} if ranking else {}
            events.append(TraceEvent.of(ctx.layer, prompt, out, detail=detail))
        detail = {"candidates": answers, "votes": dict(votes), "skipped": skipped}
        if not rankings:
            result = majority_fallback(ctx.layer, self.name, outputs, "no usable ranking", **detail)
            result.events = events
            return result
        points = borda(list(rankings.values()), len(reps))
        best = max(range(len(reps)), key=lambda i: (points[i], votes[answers[i]], -i))
        chosen = reps[best]
        reason = f"{chosen.answer} has the most Borda points ({points[best]}, from {len(rankings)} rankings)"
        if points.count(points[best]) > 1:
            reason += " (a tie, broken by first-round votes, then agent order)"
        detail["points"] = dict(zip(answers, points, strict=True))
        detail["rankings"] = {a: [answers[i] for i in r] for a, r in rankings.items()}
        return FusionResult(AgentOutput(tag, chosen.text, chosen.answer, Usage()), reason, detail, events)


async def _rank(call: AgentCall, agent: Agent, task: str, reps: list[AgentOutput]) -> tuple[str, AgentOutput]:
    prompt = render("fusion", "rank", task=task, candidates=reps, ranker=agent.name, role=agent.role)
    # The agents' shared system prompt first, so the ranking calls reuse its cached prefix.
    messages = prompt_messages(prompt)
    return prompt, await call(agent, messages)
