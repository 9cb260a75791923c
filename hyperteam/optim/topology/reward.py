"""What a sampled topology earned: running the team on it, or any other judge of outcomes.

A reward is a callable ``reward(problems, topologies) -> outcomes``: for each
problem, the hypergraphs sampled for it (lists of hyperedges over agent
names), and it returns an :class:`Outcome` for each. Training turns an
outcome into utility = correct − λ · tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hyperteam.agents.agent import Agent
from hyperteam.agents.parsing import extract_strict
from hyperteam.errors import HyperteamError
from hyperteam.evals.datasets import Problem
from hyperteam.models.runtime import Runtime
from hyperteam.topologies.hypergraph import Hyperedges

Reward = Callable[[Sequence[Problem], list[list[Hyperedges]]], list[list["Outcome"]]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run of one topology on one problem: correctness in [0, 1] and the tokens it cost.

    ``agents``: per agent, 1.0 if its last answer was right, where known; ``agents_right``
    their mean.
    """

    correct: float
    tokens: float
    prompt_tokens: float = 0.0
    agents_right: float | None = None
    agents: dict[str, float] | None = None


class TeamReward:
    """Runs a :class:`~hyperteam.topologies.hypergraph.HypergraphTeam` per sampled hypergraph.

    Correct means the strict ``#### N`` answer equals the gold answer, as in
    ``hyperteam eval``; tokens are prompt plus completion tokens of every
    call. A run that fails (the endpoint gave up) scores 0 and costs nothing.

    Args:
        agents: the team's agents.
        rounds: rounds per run.
        fusion: the fusion of the agents' last outputs.
        schedule: ``"parallel"`` or ``"sequential"``.
        model: the model for agents that name none.
        concurrency: runs in flight.

    Example:
        >>> reward = TeamReward(agents, model="sim:0.7")  # doctest: +SKIP
        >>> reward([problem], [[[["a", "b"]], []]])  # doctest: +SKIP
    """

    def __init__(
        self,
        agents: list[Agent],
        *,
        rounds: int = 3,
        fusion: str | dict[str, Any] = "majority_vote",
        schedule: str = "parallel",
        model: Any = None,
        concurrency: int = 32,
    ) -> None:
        self.agents = list(agents)
        self.rounds = rounds
        self.fusion = fusion
        self.schedule = schedule
        self.model = model
        self.concurrency = concurrency
        self._teams: dict[tuple[tuple[str, ...], ...], Any] = {}

    def team(self, hyperedges: Hyperedges) -> Any:
        """The (cached) hypergraph team for one topology."""
        from hyperteam.topologies.hypergraph import HypergraphTeam

        key = tuple(tuple(e) for e in hyperedges)
        if key not in self._teams:
            self._teams[key] = HypergraphTeam(
                self.agents,
                [list(e) for e in hyperedges],
                rounds=self.rounds,
                fusion=self.fusion,
                schedule=self.schedule,
            )
        return self._teams[key]

    def __call__(self, problems: Sequence[Problem], topologies: list[list[Hyperedges]]) -> list[list[Outcome]]:
        return asyncio.run(self._run(problems, topologies))

    async def _run(self, problems: Sequence[Problem], topologies: list[list[Hyperedges]]) -> list[list[Outcome]]:
        gate = asyncio.Semaphore(self.concurrency)
        async with Runtime(max_concurrency=self.concurrency) as runtime:

            async def one(problem: Problem, hyperedges: Hyperedges) -> Outcome:
                async with gate:
                    try:
                        result = await self.team(hyperedges).run(problem.question, runtime=runtime, model=self.model)
                    except HyperteamError:
                        return Outcome(0.0, 0.0)
                u = result.usage
                ok = extract_strict(result.text) == problem.answer
                last = [e for e in result.trace if e.kind == "agent" and e.layer == f"round{self.rounds}"]
                agents = {e.agent: float(e.error is None and e.answer == problem.answer) for e in last}
                share = sum(agents.values()) / len(agents) if agents else None
                tokens = float(u.prompt_tokens + u.completion_tokens)
                return Outcome(float(ok), tokens, float(u.prompt_tokens), share, agents or None)

            flat = await asyncio.gather(*(one(p, h) for p, hs in zip(problems, topologies, strict=True) for h in hs))
        out, at = [], 0
        for hs in topologies:
            out.append(list(flat[at : at + len(hs)]))
            at += len(hs)
        return out
