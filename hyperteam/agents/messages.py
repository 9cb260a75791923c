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
    """

    agent: str
    text: str
    answer: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    logprobs: list[float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class TraceEvent:
    """One step of a run: an agent call or a fusion.

    ``input`` is what the step read (the layer input for an agent, the
    candidate answers for a fusion); ``detail`` holds step-specific facts, such
    as a fusion's votes and the reason for its choice.
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
        return cls(kind, layer, o.agent, input, o.text, o.answer, o.usage, o.error, detail or {})

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
