"""The Agent: a named role with instructions, a model and sampling settings."""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hyperteam.agents.messages import AgentOutput
from hyperteam.agents.parsing import extract_answer
from hyperteam.errors import ModelError
from hyperteam.models.types import ChatModel, ChatRequest, Usage
from hyperteam.prompts import template

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class Agent(BaseModel):
    """One member of a team: who it is, what it is told, and which model it runs on.

    ``model`` is a model spec (``"sim:0.7"``, ``"http://host:8000/v1#NAME"``)
    or a chat model object such as a test double; None means the team's
    default model.

    Example:
        >>> solver = Agent(name="solver", role="careful math tutor",
        ...                instructions="Solve step by step. End with '#### <number>'.")
        >>> solver.clone(name="s2").name
        's2'
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)

    name: str
    role: str = ""
    instructions: str = ""
    model: str | ChatModel | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    samples: int = Field(default=1, ge=1, le=32)
    """Answers per call: above 1, one request asks the server for that many samples of the same prompt
    (``n``; with vLLM the prompt is computed once), and each is an output of its own, named
    ``NAME#1``, ``NAME#2``, ... (self-consistency in one request)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"agent names are letters, digits, '_', '-' and '.', got {value!r}")
        return value

    def clone(self, **changes: Any) -> Agent:
        """A copy with some fields changed, validated like a new agent."""
        data = self.model_dump(exclude={"model"})
        data["model"] = self.model
        data.update(changes)
        return Agent(**data)

    def messages(self, task: str, context: str | None = None, context_title: str = "") -> list[dict[str, str]]:
        """The chat messages for this agent on ``task``, with an optional input from earlier steps."""
        user = template("agent", "user").render(
            task=task,
            context=context,
            context_title=context_title or "Input",
            name=self.name,
            role=self.role,
            instructions=self.instructions,
        )
        return [system_message(), {"role": "user", "content": user}]

    async def respond(
        self, model: ChatModel, messages: list[dict[str, str]], *, sample_index: int = 0, logprobs: bool = False
    ) -> AgentOutput:
        """Calls ``model`` and parses the answer. A failed call becomes an output with ``error`` set.

        ``logprobs=True`` asks the server for token logprobs (for ``confidence_vote``).
        """
        request = ChatRequest(messages, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed)
        if logprobs:
            request.extra["logprobs"] = True
        try:
            result = await model.chat(request, sample_index=sample_index)
        except ModelError as exc:
            return AgentOutput(self.name, "", None, error=f"{exc.kind}: {exc}")
        text = result.text
        completion = result.completions[0] if result.completions else None
        return AgentOutput(
            self.name,
            text,
            extract_answer(text),
            result.usage,
            logprobs=completion.logprobs if completion else None,
            finish_reason=completion.finish_reason if completion else None,
        )

    async def respond_all(
        self, model: ChatModel, messages: list[dict[str, str]], *, logprobs: bool = False
    ) -> list[AgentOutput]:
        """Like :meth:`respond`, but ``samples`` outputs from one request (one output when ``samples`` is 1).

        The request's usage is on the first output (the call happened once); a failed call fails
        every sample.
        """
        if self.samples == 1:
            return [await self.respond(model, messages, logprobs=logprobs)]
        request = ChatRequest(
            messages, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed, n=self.samples
        )
        if logprobs:
            request.extra["logprobs"] = True
        names = [f"{self.name}#{i}" for i in range(1, self.samples + 1)]
        try:
            result = await model.chat(request)
        except ModelError as exc:
            return [AgentOutput(name, "", None, error=f"{exc.kind}: {exc}") for name in names]
        outputs = []
        for i, (name, completion) in enumerate(zip(names, result.completions, strict=False)):
            usage = result.usage if i == 0 else Usage()
            outputs.append(
                AgentOutput(
                    name,
                    completion.text,
                    extract_answer(completion.text),
                    usage,
                    logprobs=completion.logprobs,
                    finish_reason=completion.finish_reason,
                )
            )
        missing = names[len(outputs) :]  # a server that returned fewer choices than asked
        outputs += [AgentOutput(name, "", None, error="malformed: fewer choices than n") for name in missing]
        return outputs


@functools.cache
def _system_prompt() -> str:
    return template("agent", "system").render()


def system_message() -> dict[str, str]:
    """The system message every agent and LLM fusion sends first: the head of the shared prefix."""
    return {"role": "system", "content": _system_prompt()}
