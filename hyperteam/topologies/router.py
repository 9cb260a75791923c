"""Forward-phase routing: an LLM picks a layer's aggregator per task (ANN's ``select(F_l, l, I_l, task)``).

A layer with ``router="llm"`` and some ``candidates`` asks its first
agent's model (the team's default model unless that agent names one),
before its agents run, which of ``[fusion, *candidates]`` suits this task
and this layer input. The pick and the router's reason go
in the trace as a ``route`` event. The ``Choice:`` line is read as open
models write it (``Choice: 2``, ``Choice: [2]``, ``Choice: 2 (llm_select)``,
``Choice: llm_select``). A reply without a readable choice, or a failed
call, falls back to the layer's fixed ``fusion``, says so, and is marked
``detail["fallback"] = True`` so that reports can count fallbacks.

Example:
    >>> import hyperteam as ht
    >>> layer = ht.Layer("solve", agents=[ht.Agent(name="a"), ht.Agent(name="b")],
    ...                  fusion="majority_vote", candidates=["llm_select", "llm_synthesize"], router="llm")
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hyperteam.agents._calls import ask
from hyperteam.agents.messages import TraceEvent
from hyperteam.errors import ModelError
from hyperteam.fusion import Fusion, get_fusion
from hyperteam.fusion._parse import parse_index, tagged_line
from hyperteam.models.types import Usage

if TYPE_CHECKING:
    from hyperteam.topologies.layered import Layer
    from hyperteam.topologies.result import RunContext

# One line per aggregator, for the router's menu; unknown (user-registered) ones use their docstring.
ABOUT: dict[str, str] = {
    "majority_vote": "the most common final answer wins; cheap, good when agents are independent",
    "weighted_vote": "votes weighted by each agent's measured accuracy",
    "confidence_vote": "votes weighted by the agents' token confidence",
    "llm_synthesize": "a model reads all solutions and writes one corrected solution",
    "llm_select": "a model picks the most consistent solution, verbatim",
    "judge": "a judge scores each solution and the best one wins",
    "ranked_vote": "agents rank the distinct answers; Borda count",
    "debate": "agents revise their solutions after reading each other's, until most agree",
    "chain": "each agent checks and improves the previous agent's solution",
    "collect": "all solutions are passed on unchanged, for the next layer to weigh",
    "adaptive": "learned per-agent reliability selects and weights the answers",
}


def about(fusion: Fusion) -> str:
    doc = (type(fusion).__doc__ or fusion.name).strip().splitlines()[0]
    return ABOUT.get(fusion.name, doc)


async def route(layer: Layer, task: str, layer_input: str | None, ctx: RunContext) -> tuple[Fusion, list[TraceEvent]]:
    """Picks the layer's aggregator for this task; returns it and the ``route`` trace event."""
    options = [get_fusion(spec) for spec in [layer.fusion, *layer.candidates]]
    menu = [{"name": f.name, "about": about(f)} for f in options]
    names = [f.name for f in options]
    try:
        out, event = await ask(
            ctx.model(layer.agents[0].model),  # the team's default model unless the layer names its own
            f"{layer.name}.router",
            "route",
            layer=layer.name,
            target=layer.name,
            task=task,
            layer_input=layer_input,
            input_title=layer.input_title,
            options=menu,
        )
    except ModelError as exc:
        event = TraceEvent("route", layer.name, f"{layer.name}.router", "", "", None, Usage(), f"{exc.kind}: {exc}")
        event.detail = {
            "options": names,
            "choice": names[0],
            "reason": f"router failed ({exc.kind}): fixed aggregator",
            "fallback": True,
        }
        ctx.emit(event)
        return options[0], [event]
    k = _choice(tagged_line(out.text, "Choice"), names)
    reason = tagged_line(out.text, "Reason") or ""
    fallback = k is None
    if fallback:
        k = 0
        reason = "the router named no valid choice: fixed aggregator"
    event.answer = names[k]
    event.detail = {"options": names, "choice": names[k], "reason": reason, "fallback": fallback}
    ctx.emit(event)
    return options[k], [event]


def _choice(value: str | None, names: list[str]) -> int | None:
    """The 0-based option a ``Choice:`` value names: ``2``, ``[2]``, ``2 (llm_select)``, ``2.`` or a name."""
    k = parse_index(value, len(names))
    if k is not None or value is None:
        return k
    lead = re.match(r"\s*(?:option\s*)?\[?\s*(\d+)\s*\]?(?:[\s.):,]|$)", value)
    if lead:
        k = parse_index(lead.group(1), len(names))
        named = [i for i, name in enumerate(names) if name in value]
        # "2 (llm_select)": the number wins unless it contradicts the one name given
        return k if k is not None and (not named or named == [k]) else None
    named = [i for i, name in enumerate(names) if re.search(rf"\b{re.escape(name)}\b", value)]
    return named[0] if len(named) == 1 else None
