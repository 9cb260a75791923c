"""The fusion interface: how a layer's agent outputs become one output."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ConfigError
from hyperteam.models.types import ChatModel

if TYPE_CHECKING:
    from hyperteam.agents.agent import Agent


AgentCall = Callable[["Agent", list[dict[str, str]]], Awaitable[AgentOutput]]


@dataclass(slots=True)
class FusionContext:
    """What a fusion may use besides the outputs: where it runs, its agents, and models.

    Attributes:
        layer: the layer (or team) being fused.
        model: resolves a model spec through the run's runtime; None is the team's default model.
        agents: the agents whose outputs are fused, in order.
        call_agent: calls an agent (on its own model) with the given messages; strategies
            that need more rounds (debate, chain, ranked votes) use it. Each call becomes a
            trace event of the fusion's result.
        layer_input: what the layer's agents were given besides the task (None in a first layer).
        input_title: how that input is titled in the agents' prompts.
    """

    layer: str
    model: Callable[[str | None], ChatModel]
    agents: Sequence[Agent] = ()
    call_agent: AgentCall | None = None
    layer_input: str | None = None
    input_title: str = ""

    async def ask(self, agent: Agent, task: str, context: str | None, title: str) -> AgentOutput:
        """Runs ``agent`` on ``task`` with ``context`` laid out like a layer input."""
        if self.call_agent is None:
            raise ConfigError(f"fusion at {self.layer!r} needs to call agents, but this team cannot")
        return await self.call_agent(agent, agent.messages(task, context, title))


@dataclass(slots=True)
class FusionResult:
    """The fused output, and what the fusion saw and why it chose (recorded in the trace)."""

    output: AgentOutput
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    events: list[TraceEvent] = field(default_factory=list)
    """Agent calls the fusion made itself (debate rounds, rankings), in order; they go in the trace."""


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """Messages for an LLM fusion's prompt, after the system message every agent sends.

    Starting with the agents' system message lets a prefix cache reuse it.
    """
    from hyperteam.agents.agent import system_message

    return [system_message(), {"role": "user", "content": prompt}]


class Fusion(BaseModel):
    """Base of every fusion strategy. Its fields are the strategy's parameters.

    Subclasses set ``name`` and implement :meth:`fuse`; registering them with
    :func:`hyperteam.fusion.register` makes them available by name in specs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    needs_logprobs: ClassVar[bool] = False
    """The layer's agents are asked for token logprobs."""
    drives_agents: ClassVar[bool] = False
    """The fusion runs the agents itself (e.g. ``chain``); the layer does not fan them out first."""

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        raise NotImplementedError

    def spec(self) -> str | dict[str, Any]:
        """The plain-data form of this strategy, as written in team files."""
        params = self.model_dump(exclude_defaults=True)
        return {"name": self.name, **params} if params else self.name
