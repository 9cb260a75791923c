"""What agents produce and pass to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hyperteam.models.types import Usage


@dataclass(slots=True)
class AgentOutput:
    """One agent's (or one fusion's) output.

    Attributes:
        agent: who produced it.
        text: the full text.
        answer: the extracted, normalised final answer (None if there is none).
        usage: the model usage that produced it.
        error: why there is no output, if the call failed (``ModelError`` kind and message).
        logprobs: token logprobs, where the server returned them.
        finish_reason: why the model stopped (``"length"``: cut by ``max_tokens``), where known.
    """

    agent: str
    text: str
    answer: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class TraceEvent:
    """One step of a run: an agent call or a fusion.

    ``input`` is what the step read (the layer input for an agent, the
    candidate answers for a fusion); ``detail`` holds step-specific facts, such
    as a fusion's votes and the reason for its choice. Replies a user should
    know about are marked there: ``"empty": True`` (the call succeeded with no
    text), ``"finish_reason": "length"`` (cut by ``max_tokens``) and
    ``"fallback"`` (a fusion or router fell back); :func:`count_replies` counts them.
    """

    kind: str
    layer: str
    agent: str
    input: str
    output: str
    answer: str | None
    usage: Usage
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, layer: str, input: str, output: AgentOutput, *, kind: str = "agent", detail: dict[str, Any] | None = None
    ) -> TraceEvent:
        """The event of an agent call (or another step) that produced ``output`` from ``input``."""
        o = output
        detail = dict(detail or {})
        if o.error is None and not o.text.strip():
            detail["empty"] = True
        if o.finish_reason == "length":
            detail["finish_reason"] = "length"
        return cls(kind, layer, o.agent, input, o.text, o.answer, o.usage, o.error, detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "agent": self.agent,
            "input": self.input,
            "output": self.output,
            "answer": self.answer,
            "usage": self.usage.to_dict(),
            "error": self.error,
            "detail": self.detail,
        }


REPLY_FLAGS = ("empty", "truncated", "fallback")


def reply_flags(event: TraceEvent | dict[str, Any]) -> list[str]:
    """Which of ``REPLY_FLAGS`` a trace event (or its ``to_dict()``) carries."""
    detail = event.detail if isinstance(event, TraceEvent) else event.get("detail") or {}
    flags = []
    if detail.get("empty"):
        flags.append("empty")
    if detail.get("finish_reason") == "length":
        flags.append("truncated")
    if detail.get("fallback"):
        flags.append("fallback")
    return flags


def count_replies(events: list[TraceEvent] | list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per agent (or fusion), how many of its replies were empty, truncated or fallbacks; only those with any.

    Example:
        >>> count_replies([{"agent": "a", "detail": {"finish_reason": "length"}}])
        {'a': {'empty': 0, 'truncated': 1, 'fallback': 0}}
    """
    counts: dict[str, dict[str, int]] = {}
    for ev in events:
        flags = reply_flags(ev)
        if flags:
            who = ev.agent if isinstance(ev, TraceEvent) else str(ev.get("agent"))
            c = counts.setdefault(who, dict.fromkeys(REPLY_FLAGS, 0))
            for flag in flags:
                c[flag] += 1
    return counts
