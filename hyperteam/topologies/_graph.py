"""Compiling a layered team to a LangGraph graph, and running it.

One node per layer, in a chain. A layer's node fans its agents out in
parallel (``asyncio.gather``) and joins them with the layer's fusion, which
hands the fused text to the next layer. The run context travels in
``config["configurable"]``, the trace in the graph state.

Why not one LangGraph node per agent: measured on the 2-core dev machine,
LangGraph's per-node bookkeeping cost about 0.8 ms of CPU per agent call
with a node per agent against 0.25 ms with a node per layer, more than the
HTTP transport itself, and the client's CPU per call decides how many GPU
servers one process can keep busy (issue 2's benchmark).

Running: every hyperteam graph is a plain chain (START → node → … → END, no
branches), so :func:`run_compiled` steps through the compiled graph's own
node functions in order and merges their updates as the state's reducers
would (``trace`` appends, the rest overwrites). LangGraph's Pregel loop
(channels, checkpoint bookkeeping, callback managers) cost 0.5 ms of CPU per
run for a one-node graph on the dev machine, and about 1.2 ms per request
inside the HTTP service under load: a third of the service's CPU, which
decides its tail latency. The graph itself stays a LangGraph graph:
``team.compile().ainvoke(...)`` gives the same result (tests/test_team.py),
and a graph that is not a chain is run by LangGraph.
"""

from __future__ import annotations

import asyncio
import operator
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ModelError
from hyperteam.fusion import FusionContext, FusionResult
from hyperteam.topologies.result import RunContext, TeamResult, total_usage

if TYPE_CHECKING:
    from hyperteam.agents.agent import Agent
    from hyperteam.topologies.layered import Layer, LayeredTeam


class LayeredState(TypedDict):
    task: str
    input: str | None
    answer: str | None
    trace: Annotated[list, operator.add]


def compile_layered(team: LayeredTeam) -> Any:
    graph = StateGraph(LayeredState)
    previous = START
    for layer in team.layers:
        graph.add_node(layer.name, _layer_node(layer))
        graph.add_edge(previous, layer.name)
        previous = layer.name
    graph.add_edge(previous, END)
    return graph.compile()


def _layer_node(layer: Layer) -> Any:
    async def run_layer(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx: RunContext = config["configurable"]["ctx"]
        task, layer_input = state["task"], state["input"]
        fusion = layer.fusion_impl
        routed: list[TraceEvent] = []
        if layer.router == "llm" and layer.candidates:
            from hyperteam.topologies.router import route  # only teams that route pay for the import

            fusion, routed = await route(layer, task, layer_input, ctx)
        logprobs = fusion.needs_logprobs

        async def call_agent(agent: Agent, messages: list[dict[str, str]]) -> AgentOutput:
            out = await agent.respond(ctx.model(agent.model), messages, logprobs=logprobs)
            ctx.emit(TraceEvent.of(layer.name, layer_input or task, out))
            return out

        async def sample_agent(agent: Agent) -> list[AgentOutput]:
            messages = agent.messages(task, layer_input, layer.input_title)
            outs = await agent.respond_all(ctx.model(agent.model), messages, logprobs=logprobs)
            ctx.emit([TraceEvent.of(layer.name, layer_input or task, out) for out in outs])
            return outs

        outputs: list[AgentOutput] = []
        if not fusion.drives_agents:
            sampled = await asyncio.gather(*(sample_agent(agent) for agent in layer.agents))
            outputs = [out for outs in sampled for out in outs]
        events = routed + [TraceEvent.of(layer.name, layer_input or task, o) for o in outputs]
        if outputs and not any(o.ok for o in outputs):
            raise ModelError(f"layer {layer.name!r}: {failures_message(outputs)}", kind=first_error_kind(outputs))
        fctx = FusionContext(layer.name, ctx.model, layer.agents, call_agent, layer_input, layer.input_title)
        fused = await fusion.fuse(task, outputs, fctx)
        events.extend(fused.events)
        events.append(fusion_event(layer.name, fusion.name, outputs, fused))
        ctx.emit(events[-1])
        final = fused.output
        if layer.refine:
            from hyperteam.topologies.refine import refine_output

            final, extra = await refine_output(
                task, final, ctx, rounds=layer.refine, where=layer.name, model=layer.agents[0].model
            )
            events.extend(extra)
        return {"input": final.text, "answer": final.answer, "trace": events}

    return run_layer


def fusion_event(layer: str, strategy: str, outputs: list[AgentOutput], fused: FusionResult) -> TraceEvent:
    seen = "\n".join(f"{o.agent}: {o.answer}" for o in outputs)
    detail = {"strategy": strategy, "reason": fused.reason, **fused.detail}
    return TraceEvent.of(layer, seen, fused.output, kind="fusion", detail=detail)


def failures_message(outputs: list[AgentOutput]) -> str:
    errors = {o.error for o in outputs}
    if len(errors) == 1:
        return f"every agent failed: {errors.pop()}"
    return "every agent failed: " + "; ".join(f"{o.agent}: {o.error}" for o in outputs)


def first_error_kind(outputs: list[AgentOutput]) -> str:
    for o in outputs:
        if o.error:
            return o.error.split(":", 1)[0]
    return "failed"


Step = Callable[[dict[str, Any], RunnableConfig], Awaitable[dict[str, Any]]]
_CHAINS: weakref.WeakKeyDictionary[Any, list[Step] | None] = weakref.WeakKeyDictionary()


def chain_steps(graph: Any) -> list[Step] | None:
    """The node functions of ``graph`` in order if it is a plain chain START → … → END, else None."""
    if graph in _CHAINS:
        return _CHAINS[graph]
    steps: list[Step] | None = None
    builder = getattr(graph, "builder", None) if isinstance(graph, CompiledStateGraph) else None
    if builder is not None and not builder.branches and not builder.waiting_edges:
        following = dict(builder.edges)
        order, node = [], following.get(START)
        while node is not None and node != END and node not in order:
            order.append(node)
            node = following.get(node)
        funcs = [getattr(builder.nodes[n].runnable, "afunc", None) for n in order if n in builder.nodes]
        if node == END and len(following) == len(builder.edges) == len(order) + 1 == len(funcs) + 1:
            if all(f is not None for f in funcs):
                steps = funcs
    _CHAINS[graph] = steps
    return steps


async def run_compiled(graph: Any, task: str, ctx: RunContext) -> TeamResult:
    state: dict[str, Any] = {"task": task, "input": None, "answer": None, "trace": []}
    config: RunnableConfig = {"configurable": {"ctx": ctx}, "max_concurrency": 1024}
    steps = chain_steps(graph)
    if steps is None:
        state = await graph.ainvoke(state, config=config)
    else:
        for step in steps:
            update = await step(state, config)
            state = {**state, **update, "trace": state["trace"] + update.get("trace", [])}
    trace: list[TraceEvent] = state["trace"]
    return TeamResult(state["answer"], state["input"] or "", total_usage(trace), trace)
