"""The fusion interface: how a layer's agent outputs become one output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hyperteam.agents.messages import AgentOutput
from hyperteam.models.types import ChatModel


@dataclass(slots=True)
class FusionContext:
    """What a fusion may use besides the outputs: where it runs and how to reach a model.

    ``model(spec)`` resolves a model spec through the run's runtime; None is
    the team's default model.
    """

    layer: str
    model: Callable[[str | None], ChatModel]


@dataclass(slots=True)
class FusionResult:
    """The fused output, and what the fusion saw and why it chose (recorded in the trace)."""

    output: AgentOutput
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


class Fusion(BaseModel):
    """Base of every fusion strategy. Its fields are the strategy's parameters.

    Subclasses set ``name`` and implement :meth:`fuse`; registering them with
    :func:`hyperteam.fusion.register` makes them available by name in specs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        raise NotImplementedError

    def spec(self) -> str | dict[str, Any]:
        """The plain-data form of this strategy, as written in team files."""
        params = self.model_dump(exclude_defaults=True)
        return {"name": self.name, **params} if params else self.name
