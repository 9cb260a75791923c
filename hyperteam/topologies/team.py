"""What every team shares: running, synchronous running, saving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hyperteam.agents.messages import TraceEvent
from hyperteam.errors import ConfigError
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel
from hyperteam.topologies.result import RunContext, TeamResult


class Team(BaseModel):
    """Base of the team kinds: a validated spec that compiles, once, into a runnable graph."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)

    name: str = "team"
    description: str = ""
    model: str | ChatModel | None = None
    refine: int = Field(default=0, ge=0, le=10)
    """Rounds of test-time refinement of the final answer (critique, then revision); 0: none."""
    history: list[dict[str, Any]] = Field(default_factory=list)
    """What training did to this team, one entry per accepted step (written by ``hyperteam.optim``)."""

    _compiled: Any = PrivateAttr(default=None)
    _grads: dict[str, str] = PrivateAttr(default_factory=dict)

    def compile(self) -> Any:
        """The runnable graph of this team (cached until the team changes)."""
        if self._compiled is None:
            self._compiled = self._build()
        return self._compiled

    def _build(self) -> Any:
        raise NotImplementedError

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._compiled = None

    async def run(
        self,
        task: str,
        *,
        runtime: Runtime | None = None,
        model: str | ChatModel | None = None,
        on_event: Callable[[TraceEvent], None] | None = None,
    ) -> TeamResult:
        """Runs the team on ``task``.

        Args:
            task: the problem or question.
            runtime: the clients and limits to use; default: the event loop's shared runtime.
            model: the model for agents that name none (overrides the team's ``model``).
            on_event: called with each trace event as soon as its step finishes
                (every agent call as it returns, then each fusion).

        Raises:
            ModelError: a step could not go on (every agent of a layer failed).
            ConfigError: a model spec is bad.
        """
        if not isinstance(task, str) or not task.strip():
            raise ConfigError("task must be a non-empty string")
        ctx = RunContext(runtime or Runtime.current(), model if model is not None else self.model, on_event)
        started = time.perf_counter()
        result = await self._execute(task, ctx)
        if self.refine:
            from hyperteam.topologies.refine import refine_result

            result = await refine_result(task, result, ctx, rounds=self.refine, where=self.name)
        result.wall_s = time.perf_counter() - started
        return result

    async def _execute(self, task: str, ctx: RunContext) -> TeamResult:
        raise NotImplementedError

    def run_sync(self, task: str, **kwargs: Any) -> TeamResult:
        """:meth:`run` for code without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(task, **kwargs))
        raise ConfigError("run_sync() was called inside a running event loop; use `await team.run(...)`")

    def named_parameters(self) -> list[tuple[str, Any]]:
        """Every trainable text (roles, instructions, aggregator choices) as ``(name, Parameter)``.

        See :mod:`hyperteam.topologies.parameters`.
        """
        from hyperteam.topologies.parameters import named_parameters

        return named_parameters(self)

    def state_dict(self) -> dict[str, Any]:
        """The values of :meth:`named_parameters`, by name (plain data, JSON-ready)."""
        return {name: p.value for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Sets parameter values from :meth:`state_dict` output; all or nothing.

        Raises:
            ConfigError: with ``strict``, a missing or unknown name; any invalid value.
        """
        from hyperteam.topologies.parameters import load_state_dict

        load_state_dict(self, state, strict=strict)

    def zero_grad(self) -> None:
        """Forgets the textual gradients that ``loss.backward()`` left on the parameters."""
        self._grads.clear()

    def to_mermaid(self) -> str:
        """The team's structure as a Mermaid flowchart."""
        from hyperteam.topologies.export import to_mermaid

        return to_mermaid(self)

    def to_dot(self) -> str:
        """The team's structure as Graphviz DOT text."""
        from hyperteam.topologies.export import to_dot

        return to_dot(self)

    def draw(self, path: str | Path) -> Path:
        """Draws the team's structure to a PNG (or .svg/.pdf) file; needs ``hyperteam[viz]``."""
        from hyperteam.topologies.export import draw

        return draw(self, path)

    def save(self, path: str | Path) -> None:
        """Writes the team's spec to ``path`` (``.json``, ``.yaml`` or ``.yml``)."""
        from hyperteam.topologies.io import save_team

        save_team(self, path)
