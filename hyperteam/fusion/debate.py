"""Multi-agent debate with early stop: agents revise their answers until enough of them agree."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import Field

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ConfigError
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import first_with, is_tie, no_answer, plurality, voters
from hyperteam.models.types import Usage
from hyperteam.prompts import render

if TYPE_CHECKING:
    from hyperteam.agents.agent import Agent


def agreement(outputs: list[AgentOutput]) -> float:
    """The share of debaters that gave the most common answer; a failed or answerless one does not agree."""
    _, votes = plurality(outputs)
    return max(votes.values()) / len(outputs) if votes else 0.0


class Debate(Fusion):
    """Rounds of debate (Du et al. 2023) that stop once more than ``consensus`` of the agents agree (DyLAN).

    The layer's parallel outputs are round 1. While at most ``consensus``
    (2/3) of the agents agree and fewer than ``max_rounds`` rounds have run,
    every agent sees all agents' latest solutions, its own marked by its name,
    and answers again. The shared part of the prompt (the problem, the layer
    input, the solutions) comes first and is byte-identical across agents, so
    a prefix-caching server reads it once per round. An agent whose call fails
    keeps its previous output. The final answer is the majority of the last
    round; ties go to the answer whose first vote came earliest in agent order.

    ``detail`` records the number of rounds, each round's votes and agreement,
    and whether the debate stopped early; every extra call is in ``events``.

    Args:
        max_rounds: the most rounds, counting the layer's own as round 1.
        consensus: the share of agents that must agree (strictly more than it) to stop.

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion={"name": "debate", "max_rounds": 2})
    """

    name = "debate"

    max_rounds: int = Field(default=3, ge=1)
    consensus: float = Field(default=2 / 3, ge=0.0, lt=1.0)

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        if not voters(outputs):  # nobody answered: there is nothing to debate
            return no_answer(ctx.layer, self.name, outputs)
        latest, events = list(outputs), []
        rounds: list[dict[str, int]] = [plurality(latest)[1]]
        shares = [agreement(latest)]
        agents: list[Agent] = []
        while shares[-1] <= self.consensus and len(rounds) < self.max_rounds:
            agents = agents or _debaters(ctx, outputs)
            number = len(rounds) + 1
            context = render(
                "fusion",
                "debate",
                round=number,
                outputs=_shown(latest),
                layer_input=ctx.layer_input,
                input_title=ctx.input_title or "Input",
            )
            replies = await asyncio.gather(*(ctx.ask(a, task, context, "Debate") for a in agents))
            events += [TraceEvent.of(ctx.layer, context, o, detail={"round": number}) for o in replies]
            latest = [new if new.ok else old for new, old in zip(replies, latest, strict=True)]
            rounds.append(plurality(latest)[1])
            shares.append(agreement(latest))
        reached = shares[-1] > self.consensus
        detail = {
            "rounds": len(rounds),
            "votes": rounds,
            "agreement": [round(s, 4) for s in shares],
            "consensus": reached,
            "stopped_early": reached and len(rounds) < self.max_rounds,
        }
        winner, votes = plurality(latest)
        if winner is None:
            result = no_answer(ctx.layer, self.name, latest, **detail)
            result.events = events
            return result
        chosen = first_with(latest, winner)
        how = "consensus" if reached else f"no consensus after {self.max_rounds} rounds"
        reason = f"{votes[winner]} of {len(latest)} agents answer {winner} in round {len(rounds)} ({how})"
        if is_tie(votes, winner):
            reason += " (a tie, broken by agent order)"
        output = AgentOutput(f"{ctx.layer}.{self.name}", chosen.text, winner, Usage())
        return FusionResult(output, reason, detail, events)


def _debaters(ctx: FusionContext, outputs: list[AgentOutput]) -> list[Agent]:
    by_name = {a.name: a for a in ctx.agents}
    missing = [o.agent for o in outputs if o.agent not in by_name]
    if missing:
        raise ConfigError(f"fusion 'debate' at {ctx.layer!r} cannot call {', '.join(missing)}: not among its agents")
    return [by_name[o.agent] for o in outputs]


def _shown(latest: list[AgentOutput]) -> list[AgentOutput]:
    # An agent with no solution yet (failed in every round) is shown as such, not as an empty text.
    return [o if o.ok else AgentOutput(o.agent, "(no solution)") for o in latest]
