"""Request and response shapes of the service, and how a conversation becomes a team's task.

The conversation rule: the task is the text of the last message, which must
come from the user (a trailing assistant message would be a prefill, which a
team cannot continue). When other messages come before it (a system prompt,
earlier turns), they are given to the team as context, oldest first::

    Conversation so far:
    [system] You are terse.
    [user] What is 2 + 2?
    [assistant] 4

    Current message:
    And times 3?

Message content is a string or a list of ``{"type": "text", "text": ...}``
parts (joined with newlines); images, audio and tool messages are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperteam.serve.errors import APIError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    """One OpenAI chat message. Extra keys are allowed only when null (clients replay SDK objects)."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Parameters outside this model are refused (400) unless null or a
    no-op default; the schema says ``additionalProperties: false`` accordingly.

    Strict: ``"stream": 0`` or ``"n": "2"`` are type errors, not guesses.
    """

    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"additionalProperties": False})

    model: str = Field(description="a served team's name (see /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="overrides every agent's temperature")
    max_tokens: int | None = Field(default=None, ge=1, description="caps every agent call's completion")
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="caps every agent call's completion (with max_tokens too: the smaller)"
    )
    seed: int | None = Field(default=None, description="overrides every agent's seed")
    stop: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)]
        | None
    ) = Field(default=None, description="the final text is cut at the first stop sequence")
    n: int | None = Field(default=None, ge=1, le=128, description="independent runs of the team, one choice each")
    stream: bool | None = False
    stream_options: StreamOptions | None = Field(
        default=None, description="honoured when streaming; a non-streamed completion always has its usage"
    )


# Parameters a team cannot honour, accepted only at the value that changes nothing.
_NO_OP = {
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "store": False,
    "parallel_tool_calls": True,
    "modalities": ["text"],
    "response_format": {"type": "text"},
    "tools": [],
}


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "hyperteam"
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """The OpenAI ``chat.completion`` object, plus ``hyperteam``: run ids, answers, trace summaries."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    hyperteam: dict[str, Any]


class RunCreate(BaseModel):
    """``POST /v1/runs``: a team and its input (a task string, or OpenAI messages)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    team: str
    input: str | list[ChatMessage]


class Run(BaseModel):
    """A run as the API shows it. ``trace`` holds the run's agent calls and fusions so far."""

    id: str
    object: Literal["run"] = "run"
    team: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
    input: dict[str, Any]
    result: dict[str, Any] | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    created_at: float
    updated_at: float
    trace: list[dict[str, Any]] = Field(default_factory=list)


def check_parameters(request: ChatCompletionRequest) -> None:
    """Refuses, with a 400 naming it, every parameter the service would otherwise have to drop."""
    for name, value in (request.model_extra or {}).items():
        if value is None or (name in _NO_OP and value == _NO_OP[name]):
            continue
        raise APIError(
            400,
            f"unsupported parameter {name!r}: a served team cannot honour it (leave it out or null)",
            param=name,
            code="unsupported_parameter",
        )
    if request.stream_options is not None:
        for name, value in (request.stream_options.model_extra or {}).items():
            if value is not None:
                raise APIError(400, f"unsupported stream option {name!r}", param=f"stream_options.{name}")


def stop_sequences(request: ChatCompletionRequest) -> list[str]:
    stop = request.stop
    return [] if stop is None else [stop] if isinstance(stop, str) else list(stop)


def agent_settings(request: ChatCompletionRequest) -> dict[str, Any]:
    """The per-agent overrides a request asks for: ``temperature``, ``max_tokens``, ``seed``."""
    settings: dict[str, Any] = {}
    if request.temperature is not None:
        settings["temperature"] = request.temperature
    limits = [t for t in (request.max_tokens, request.max_completion_tokens) if t is not None]
    if limits:
        settings["max_tokens"] = min(limits)  # both caps hold
    if request.seed is not None:
        settings["seed"] = request.seed
    return settings


def message_texts(messages: list[ChatMessage]) -> list[str]:
    """Each message's text, checking that it is text only. Raises a 400 ``APIError`` otherwise."""
    texts = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role in ("tool", "function"):
            raise APIError(400, f"{where}: {m.role} messages are not supported (teams use no tools)", param=where)
        for key, value in (m.model_extra or {}).items():
            if value is not None:
                raise APIError(400, f"{where}.{key} is not supported", param=f"{where}.{key}")
        if m.content is None or isinstance(m.content, str):
            texts.append(m.content or "")
            continue
        parts = []
        for j, part in enumerate(m.content):
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, f"{where}.content[{j}]: only text parts are supported", param=f"{where}.content")
            parts.append(part["text"])
        texts.append("\n".join(parts))
    return texts


def conversation_task(messages: list[ChatMessage]) -> str:
    """The team's task for a conversation (see the module docstring for the rule)."""
    texts = message_texts(messages)
    if messages[-1].role != "user":
        raise APIError(400, "the last message must come from the user", param="messages")
    if not texts[-1].strip():
        raise APIError(400, "the last user message is empty", param="messages")
    earlier = [(m.role, t) for m, t in zip(messages[:-1], texts[:-1], strict=True) if t.strip()]
    if not earlier:
        return texts[-1]
    lines = ["Conversation so far:", *(f"[{role}] {text}" for role, text in earlier), "", "Current message:", texts[-1]]
    return "\n".join(lines)


def input_task(stored: dict[str, Any]) -> str:
    """The task of a stored run input (``{"input": str}`` or ``{"messages": [...]}``)."""
    if "messages" in stored:
        return conversation_task([ChatMessage.model_validate(m) for m in stored["messages"]])
    return str(stored.get("input", ""))
