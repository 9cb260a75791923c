"""Test-time refinement: textual backprop on the answer itself (TextGrad's instance optimisation).

``refine=k`` on a layer (or a whole team) runs up to ``k`` rounds on the
layer's fused output (or the team's final answer): a critic checks it
against the task and ends with ``Verdict: OK`` or ``Verdict: FIX`` (the
textual gradient of the answer); on ``FIX`` a reviser writes a corrected
solution. Refinement stops early on ``OK``; a verdict that is neither also
stops it (an unreadable critique is not a reason to rewrite a solution) and
is recorded. Every call is a trace event (``critique``, ``revise``), counted
in the run's usage. Critic and reviser run on the team's default model (a
layer's on its first agent's model, when that agent names one).

Example:
    >>> import hyperteam as ht
    >>> team = ht.load_team("single")
    >>> team.refine = 2          # or ht.Layer(..., refine=2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperteam.agents._calls import ask
from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ModelError
from hyperteam.fusion._parse import tagged_line
from hyperteam.models.types import Usage
from hyperteam.topologies.result import total_usage

if TYPE_CHECKING:
    from hyperteam.topologies.result import RunContext, TeamResult


async def refine_output(
    task: str, output: AgentOutput, ctx: RunContext, *, rounds: int, where: str, model: Any = None
) -> tuple[AgentOutput, list[TraceEvent]]:
    """Up to ``rounds`` critique-and-revise rounds on ``output``; returns the final output and the events."""
    events: list[TraceEvent] = []
    current = output
    chat = ctx.model(model)
    for index in range(1, rounds + 1):
        try:
            critique, event = await ask(
                chat, f"{where}.critic", "critique", layer=where, task=task, answer=current.text
            )
        except ModelError as exc:
            events.append(_failed("critique", where, index, exc))
            break
        verdict = (tagged_line(critique.text, "Verdict") or "").strip().upper()
        event.answer = verdict or None
        stop = not verdict.startswith("FIX")
        event.detail = {"round": index, "verdict": verdict or "missing", "stopped": stop}
        events.append(event)
        ctx.emit(event)
        if stop:
            break
        try:
            revised, event = await ask(
                chat,
                f"{where}.reviser",
                "revise",
                layer=where,
                system=("agent", "system"),  # the team's answer format: ends with "#### <answer>"
                task=task,
                answer=current.text,
                critique=critique.text,
            )
        except ModelError as exc:
            events.append(_failed("revise", where, index, exc))
            break
        event.detail = {"round": index, "before": current.answer, "after": revised.answer}
        events.append(event)
        ctx.emit(event)
        if revised.answer is not None:  # a revision without an answer keeps the previous solution
            current = AgentOutput(f"{where}.refine", revised.text, revised.answer)
    return current, events


async def refine_result(task: str, result: TeamResult, ctx: RunContext, *, rounds: int, where: str) -> TeamResult:
    """Refines a team's final answer in place: the events join its trace and its usage."""
    start = AgentOutput(where, result.text, result.answer)
    final, events = await refine_output(task, start, ctx, rounds=rounds, where=where)
    result.trace.extend(events)
    result.usage = total_usage(result.trace)
    result.answer, result.text = final.answer, final.text
    return result


def _failed(kind: str, where: str, index: int, exc: ModelError) -> TraceEvent:
    role = "critic" if kind == "critique" else "reviser"
    event = TraceEvent(kind, where, f"{where}.{role}", "", "", None, Usage(), f"{exc.kind}: {exc}")
    event.detail = {"round": index, "stopped": True}
    return event
