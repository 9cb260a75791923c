"""Compiling a hypergraph team to a LangGraph graph: one node per round, then the fusion.

A round's node runs its agents level by level (one level holding every
agent under the parallel schedule), each level's agents at once with
``asyncio.gather``. Like the layered team, a node per round and not per agent,
because LangGraph's per-node bookkeeping costs more CPU than an agent call's
transport (see ``_graph.py``). The latest output of every agent travels in
the graph state from round to round.
"""

from __future__ import annotations

import asyncio
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ModelError
from hyperteam.fusion import Fusion, FusionContext, get_fusion
from hyperteam.prompts import render
from hyperteam.topologies._graph import failures_message, first_error_kind, fusion_event
from hyperteam.topologies.result import RunContext

if TYPE_CHECKING:
    from hyperteam.agents.agent import Agent
    from hyperteam.topologies.hypergraph import HypergraphTeam

FUSION_NODE = "fusion"


@dataclass(frozen=True, slots=True)
class Said:
    """An agent's latest successful output, as its peers are shown it."""

    agent: str
    round: int
    text: str


class HypergraphState(TypedDict):
    task: str
    input: str | None
    answer: str | None
    latest: dict[str, Said]
    outputs: list[AgentOutput]
    trace: Annotated[list, operator.add]


@dataclass(slots=True)
class _Plan:
    """The team's structure resolved once at compile time."""

    agents: list[Agent]
    groups: list[tuple[str | None, list[str]]]
    """(label, members) per hyperedge, then a label-less group of one per agent in no hyperedge."""
    memberships: dict[str, list[int]]
    levels: list[list[Agent]]
    fusion: Fusion
    peer_title: str

    def contexts(self, level: list[Agent], latest: dict[str, Said]) -> list[str | None]:
        # Each group's block is rendered once per level: its members then send the same bytes.
        blocks: dict[int, str] = {}
        contexts: list[str | None] = []
        for agent in level:
            parts = []
            for g in self.memberships[agent.name]:
                if g not in blocks:
                    blocks[g] = self._block(g, latest)
                if blocks[g]:
                    parts.append(blocks[g])
            contexts.append("\n\n".join(parts) or None)
        return contexts

    def _block(self, group: int, latest: dict[str, Said]) -> str:
        label, members = self.groups[group]
        outputs = [latest[m] for m in members if m in latest]
        if not outputs:
            return ""
        return render("hypergraph", "edge", label=label, members=members, outputs=outputs)


def plan(team: HypergraphTeam) -> _Plan:
    agents = list(team.agents)
    groups: list[tuple[str | None, list[str]]] = [(f"e{i}", list(m)) for i, m in enumerate(team.hyperedges)]
    memberships: dict[str, list[int]] = {a.name: [] for a in agents}
    for g, (_, members) in enumerate(groups):
        for m in members:
            memberships[m].append(g)
    for a in agents:
        if not memberships[a.name]:
            memberships[a.name].append(len(groups))
            groups.append((None, [a.name]))
    levels = [agents] if team.schedule == "parallel" else _levels(agents, team.hyperedges)
    return _Plan(agents, groups, memberships, levels, get_fusion(team.fusion), team.peer_title)


def _levels(agents: list[Agent], hyperedges: list[list[str]]) -> list[list[Agent]]:
    """Sequential schedule: an agent waits for its co-members listed before it, and no one else."""
    order = {a.name: i for i, a in enumerate(agents)}
    level: dict[str, int] = {}
    for a in agents:
        before = {m for members in hyperedges if a.name in members for m in members if order[m] < order[a.name]}
        level[a.name] = 1 + max((level[m] for m in before), default=-1)
    levels: list[list[Agent]] = [[] for _ in range(max(level.values()) + 1)]
    for a in agents:
        levels[level[a.name]].append(a)
    return levels


def compile_hypergraph(team: HypergraphTeam) -> Any:
    p = plan(team)
    graph = StateGraph(HypergraphState)
    previous = START
    for r in range(1, team.rounds + 1):
        name = f"round{r}"
        graph.add_node(name, _round_node(p, r, last=r == team.rounds))
        graph.add_edge(previous, name)
        previous = name
    graph.add_node(FUSION_NODE, _fusion_node(p))
    graph.add_edge(previous, FUSION_NODE)
    graph.add_edge(FUSION_NODE, END)
    return graph.compile()


def _round_node(p: _Plan, r: int, *, last: bool) -> Any:
    layer = f"round{r}"
    logprobs = last and p.fusion.needs_logprobs  # only the fused outputs need them

    async def run_round(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx: RunContext = config["configurable"]["ctx"]
        task = state["task"]
        latest: dict[str, Said] = dict(state.get("latest") or {})
        outputs: dict[str, AgentOutput] = {}
        events: list[TraceEvent] = []

        async def call(agent: Agent, context: str | None) -> tuple[TraceEvent, AgentOutput]:
            messages = agent.messages(task, context, p.peer_title)
            out = await agent.respond(ctx.model(agent.model), messages, logprobs=logprobs)
            event = TraceEvent.of(layer, context or task, out)
            ctx.emit(event)  # as each agent returns, for the service's event streams
            return event, out

        for level in p.levels:
            contexts = p.contexts(level, latest)
            for event, out in await asyncio.gather(*(call(a, c) for a, c in zip(level, contexts, strict=True))):
                events.append(event)
                outputs[out.agent] = out
                if out.ok:
                    latest[out.agent] = Said(out.agent, r, out.text)
                else:
                    latest.pop(out.agent, None)  # a failed agent is skipped as a peer
        ordered = [outputs[a.name] for a in p.agents]
        if not any(o.ok for o in ordered):
            raise ModelError(f"round {r}: {failures_message(ordered)}", kind=first_error_kind(ordered))
        return {"latest": latest, "outputs": ordered, "trace": events}

    return run_round


def _fusion_node(p: _Plan) -> Any:
    async def fuse(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx: RunContext = config["configurable"]["ctx"]
        outputs: list[AgentOutput] = state["outputs"]

        async def call_agent(agent: Agent, messages: list[dict[str, str]]) -> AgentOutput:
            out = await agent.respond(ctx.model(agent.model), messages)
            ctx.emit(TraceEvent.of(FUSION_NODE, "", out))
            return out

        fctx = FusionContext(FUSION_NODE, ctx.model, p.agents, call_agent, None, p.peer_title)
        fused = await p.fusion.fuse(state["task"], outputs, fctx)
        events = [*fused.events, fusion_event(FUSION_NODE, p.fusion.name, outputs, fused)]
        ctx.emit(events[-1])
        return {"input": fused.output.text, "answer": fused.output.answer, "trace": events}

    return fuse
