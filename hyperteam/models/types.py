"""Plain data passed between teams, agents and model clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class Usage:
    """Tokens, calls and model time, as reported by the server's ``usage`` field.

    Usages add up: ``total = a + b``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
            self.latency_s + other.latency_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
            "latency_s": round(self.latency_s, 6),
        }


@dataclass(slots=True)
class ChatRequest:
    """One chat-completions request, in OpenAI terms.

    ``extra`` is merged into the request body as is (``logprobs``,
    vendor fields). ``json_schema`` asks for output that follows a JSON
    schema: vLLM gets ``structured_outputs={"json": schema}`` (not the removed
    ``guided_json``), OpenAI a ``response_format`` of type ``json_schema``.
    ``n`` > 1 with a ``seed`` draws several samples in one request (one
    prompt prefill for all of them), as self-consistency wants.

    Example:
        >>> ChatRequest([{"role": "user", "content": "2+2?"}], n=5, seed=7, temperature=0.7).n
        5
    """

    messages: list[dict[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    seed: int | None = None
    stop: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None


@dataclass(slots=True)
class Completion:
    """One choice of a chat completion."""

    text: str
    finish_reason: str | None = None
    logprobs: list[float] | None = None


@dataclass(slots=True)
class ChatResult:
    """What a model returned for one request: its choices and their usage."""

    completions: list[Completion]
    usage: Usage
    model: str = ""
    cached: bool = False

    @property
    def text(self) -> str:
        return self.completions[0].text if self.completions else ""


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers chat requests: an endpoint client, the simulator, a test double.

    ``sample_index`` distinguishes repeated samples of one request (so that
    caches and deterministic simulators do not collapse them into one).
    """

    name: str

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult: ...
