"""The hypergraph team (HyperAgent, arXiv 2510.10611): agents that talk along hyperedges.

A hyperedge is a group of agents on one subtask. The team runs ``rounds``
rounds; in each round every agent reads the latest outputs of the members of
its hyperedges and answers again. After the last round a fusion (any
registered strategy) turns the agents' last-round outputs into the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.fusion import get_fusion
from hyperteam.topologies.result import RunContext, TeamResult
from hyperteam.topologies.team import Team

if TYPE_CHECKING:
    import networkx as nx


def _check_hyperedge(members: list[str], info: ValidationInfo) -> list[str]:
    # Runs per hyperedge, so pydantic names the culprit as ``hyperedges[i]``.
    if not members:
        raise ValueError("a hyperedge needs at least one agent")
    twice = sorted({m for m in members if members.count(m) > 1})
    if twice:
        raise ValueError(f"the hyperedge lists {', '.join(map(repr, twice))} more than once")
    agents = info.data.get("agents")  # absent when the agents themselves were invalid
    if agents is not None:
        names = [a.name for a in agents]
        unknown = [m for m in members if m not in names]
        if unknown:
            raise ValueError(f"unknown agent {unknown[0]!r} in the hyperedge; agents: {', '.join(names)}")
    return members


Hyperedges = list[list[str]]
"""A communication structure: groups of agent names that see each other's outputs."""


class HypergraphTeam(Team):
    """Agents that exchange outputs along hyperedges for a few rounds, then fuse (HyperAgent).

    Each round, an agent's prompt holds the problem, then one section per
    hyperedge it belongs to (in hyperedge order) with the latest output of
    every member, its own included, and its role last. An agent in no
    hyperedge works alone: it reads only its own latest output.

    Schedules:
        ``"parallel"`` (default): every agent of a round runs at once on the
        previous round's outputs; round 1 has no peer input. Members of a
        hyperedge (with the same memberships) send byte-identical prompts up
        to their role, so a prefix-caching server computes the block once.

        ``"sequential"``: agents take turns in list order within a round. An
        agent reads this round's outputs of the co-members listed before it
        and the previous round's of the rest. Agents with no such dependency
        between them still run in parallel (level scheduling): with
        ``[["a", "b"], ["c", "d"]]`` a and c run first, then b and d.

    A failed agent call is recorded in the trace and skipped as a peer; a
    round in which every agent failed ends the run with ``ModelError``.

    Example:
        >>> import hyperteam as ht
        >>> agents = [ht.Agent(name=n, role="math tutor") for n in "abcd"]
        >>> team = HypergraphTeam(agents, [["a", "b", "c"], ["c", "d"]], rounds=2, fusion="majority_vote")
        >>> team.co_members("c")
        ['a', 'b', 'd']
        >>> result = team.run_sync("Janet's ducks lay 16 eggs per day ...", model="sim:0.8")  # doctest: +SKIP
    """

    kind: Literal["hypergraph"] = "hypergraph"
    agents: list[Agent] = Field(min_length=1)
    hyperedges: list[Annotated[list[str], AfterValidator(_check_hyperedge)]] = Field(default_factory=list)
    rounds: int = Field(default=3, ge=1)
    fusion: str | dict[str, Any] = "majority_vote"
    schedule: Literal["parallel", "sequential"] = "parallel"
    peer_title: str = "Latest solutions in your hyperedges (yours included); check them before you answer"

    def __init__(
        self, agents: list[Agent] | None = None, hyperedges: list[list[str]] | None = None, /, **data: Any
    ) -> None:
        if agents is not None:
            data["agents"] = agents
        if hyperedges is not None:
            data["hyperedges"] = hyperedges
        super().__init__(**data)

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, agents: list[Agent]) -> list[Agent]:
        names = [a.name for a in agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate agent names: {', '.join(dupes)}")
        sampled = [a.name for a in agents if a.samples > 1]
        if sampled:
            raise ValueError(f"agent {sampled[0]!r} has samples > 1: a hypergraph member answers once per round")
        return agents

    @field_validator("hyperedges")
    @classmethod
    def _distinct_hyperedges(cls, hyperedges: list[list[str]]) -> list[list[str]]:
        # A repeated group would put the same outputs in a prompt twice, for nothing.
        seen: dict[frozenset[str], int] = {}
        for i, members in enumerate(hyperedges):
            first = seen.setdefault(frozenset(members), i)
            if first != i:
                raise ValueError(f"hyperedge {i} has the same agents as hyperedge {first}: {', '.join(members)}")
        return hyperedges

    @field_validator("fusion")
    @classmethod
    def _check_fusion(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            fusion = get_fusion(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None  # pydantic adds where in the spec it was
        if fusion.drives_agents:
            raise ValueError(
                f"fusion {fusion.name!r} runs the agents itself; a hypergraph team fuses its agents' "
                "last-round outputs: choose a vote or a synthesis"
            )
        return value

    @model_validator(mode="after")
    def _members_are_agents(self) -> HypergraphTeam:
        # The per-hyperedge check cannot see agents assigned after construction.
        names = {a.name for a in self.agents}
        for i, members in enumerate(self.hyperedges):
            unknown = [m for m in members if m not in names]
            if unknown:
                raise ValueError(f"hyperedges[{i}]: unknown agent {unknown[0]!r}")
        return self

    @classmethod
    def from_graph(cls, agents: list[Agent], graph: nx.Graph, /, **data: Any) -> HypergraphTeam:
        """A team whose hyperedges are the edges of a pairwise graph over agent names.

        Each edge becomes a 2-edge (direction dropped, duplicates merged, see
        :func:`hyperteam.topologies.graphs.to_hyperedges`); agents that are
        not in the graph work alone. A dense graph is cheaper as one
        hyperedge: every 2-edge repeats the agent's own output in its prompt.

        Example:
            >>> from hyperteam.topologies import graphs
            >>> agents = [Agent(name=n) for n in "abc"]
            >>> HypergraphTeam.from_graph(agents, graphs.chain(["a", "b", "c"]), rounds=2).hyperedges
            [['a', 'b'], ['b', 'c']]
        """
        from hyperteam.topologies.graphs import to_hyperedges

        return cls(agents, to_hyperedges(graph), **data)

    def co_members(self, name: str) -> list[str]:
        """The agents that share a hyperedge with ``name`` (itself excluded), in agent order.

        Raises:
            ConfigError: the team has no agent ``name``.
        """
        names = [a.name for a in self.agents]
        if name not in names:
            raise ConfigError(f"no agent named {name!r} in this team; agents: {', '.join(names)}")
        peers = {m for members in self.hyperedges if name in members for m in members}
        return [n for n in names if n in peers and n != name]

    def _build(self) -> Any:
        from hyperteam.topologies._hypergraph_run import compile_hypergraph

        return compile_hypergraph(self)

    async def _execute(self, task: str, ctx: RunContext) -> TeamResult:
        from hyperteam.topologies._graph import run_compiled

        return await run_compiled(self.compile(), task, ctx)
