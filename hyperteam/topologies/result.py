"""What a team run returns, and the context a run carries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperteam.agents.messages import TraceEvent
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel, Usage


@dataclass(slots=True)
class RunContext:
    """The dependencies of one run: the runtime that owns the clients, the default model,
    and who wants to hear about each step as it happens.

    Handed to every node of a compiled team (LangGraph ``configurable``), so
    that nothing reaches for a global client.
    """

    runtime: Runtime
    default_model: str | ChatModel | None = None
    on_event: Callable[[TraceEvent], None] | None = None

    def model(self, spec: str | ChatModel | None) -> ChatModel:
        return self.runtime.model(spec if spec is not None else self.default_model)

    def emit(self, events: TraceEvent | list[TraceEvent]) -> None:
        """Reports finished steps to ``on_event`` (the service streams them), in order."""
        if self.on_event is not None:
            for ev in events if isinstance(events, list) else [events]:
                self.on_event(ev)


@dataclass(slots=True)
class TeamResult:
    """The outcome of ``team.run``: the answer, the text, usage and the trace of every step.

    Attributes:
        answer: the normalised final answer (None if the team gave none).
        text: the final output's full text.
        usage: tokens, calls and model time summed over every call of the run.
        trace: every agent call and fusion, in order.
        wall_s: the run's wall time.
    """

    answer: str | None
    text: str
    usage: Usage
    trace: list[TraceEvent] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def usage_by_agent(self) -> dict[str, Usage]:
        totals: dict[str, Usage] = defaultdict(Usage)
        for ev in self.trace:
            totals[ev.agent] = totals[ev.agent] + ev.usage
        return dict(totals)

    @property
    def usage_by_layer(self) -> dict[str, Usage]:
        totals: dict[str, Usage] = defaultdict(Usage)
        for ev in self.trace:
            totals[ev.layer] = totals[ev.layer] + ev.usage
        return dict(totals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "text": self.text,
            "usage": self.usage.to_dict(),
            "wall_s": round(self.wall_s, 6),
            "trace": [ev.to_dict() for ev in self.trace],
        }


def total_usage(trace: list[TraceEvent]) -> Usage:
    total = Usage()
    for ev in trace:
        total = total + ev.usage
    return total
