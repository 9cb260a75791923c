"""Request and response shapes of the service, and how a conversation becomes a team's task.

The conversation rule: the task is the text of the last user message that
has any (a conversation without one is refused). The other messages with text
(a system prompt, earlier turns, an assistant turn after it, as OpenAI
clients may send) are given to the team as context, in their order::

    Conversation so far:
    [system] You are terse.
    [user] What is 2 + 2?
    [assistant] 4

    Current message:
    And times 3?

Message content is a string or a list of ``{"type": "text", "text": ...}``
parts (joined with newlines); images, audio and tool messages are refused.
The OpenAPI schema says all of this (it lists only the roles and parts that
are accepted, and requires a user message with text), so that a request valid
by the schema is never refused for its shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from hyperteam.serve._json import INT64_MAX, INT64_MIN
from hyperteam.serve.errors import APIError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
# Token counts go to model servers that hold them in 32 bits (llama.cpp's n_predict).
INT32_MAX = (1 << 31) - 1
_TEXT = re.compile(r"\S")  # "has text": the schemas' ``pattern`` says the same


def _whole(value: Any) -> Any:
    """2.0 is an integer in JSON Schema, so it is one here too (strict mode alone would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integer parameters' bounds, also written into the OpenAPI schema as integers (FastAPI's schema
# models hold them as floats, and 2**63 - 1 is not one).
INT_BOUNDS = {"seed": (INT64_MIN, INT64_MAX), "max_tokens": (1, INT32_MAX), "max_completion_tokens": (1, INT32_MAX)}


def _whole_int(ge: int, le: int) -> Any:
    def within(value: int) -> int:
        if not ge <= value <= le:
            raise ValueError(f"must be from {ge} to {le}")
        return value

    schema = WithJsonSchema({"type": "integer", "minimum": ge, "maximum": le})
    return Annotated[int, BeforeValidator(_whole), AfterValidator(within), schema]


# The schemas below say exactly what the service accepts, including what the routes check
# beyond pydantic (tool messages and non-text parts are refused with a 400 naming them).
_NULL_ONLY = {"type": "null"}
_TEXT_PART = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    "required": ["type", "text"],
    "additionalProperties": _NULL_ONLY,
}
_CONTENT = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}, {"type": "null"}],
    "description": "text, or a list of text parts (joined with newlines)",
}
_HAS_TEXT = {"type": "string", "pattern": _TEXT.pattern}
# At least one user message with text: the task (see the module docstring).
_A_TASK = {
    "type": "object",
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                _HAS_TEXT,
                {
                    "type": "array",
                    "contains": {"type": "object", "properties": {"text": _HAS_TEXT}, "required": ["text"]},
                },
            ]
        },
    },
    "required": ["role", "content"],
}
# Parameters a team cannot honour, accepted only at the value that changes nothing (JSON equality:
# ``1.0`` is ``1``, ``true`` is not).
_NO_OP: dict[str, Any] = {
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


def _no_op_schema(schema: dict[str, Any]) -> None:
    for name, value in _NO_OP.items():
        schema["properties"][name] = {
            "anyOf": [{"const": value}, {"type": "null"}],
            "description": "accepted only at this value, which changes nothing (a team cannot honour it)",
        }
    schema["additionalProperties"] = _NULL_ONLY


class ChatMessage(BaseModel):
    """One OpenAI chat message. Extra keys are allowed only when null (clients replay SDK objects)."""

    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"additionalProperties": _NULL_ONLY})

    role: Annotated[
        Role,
        WithJsonSchema({"type": "string", "enum": ["system", "developer", "user", "assistant"]}),
    ]
    content: Annotated[str | list[dict[str, Any]] | None, WithJsonSchema(_CONTENT)] = None
    name: str | None = None


def _messages_schema(*, min_items: int = 1) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ChatMessage"},
        "minItems": min_items,
        "contains": _A_TASK,
    }


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"additionalProperties": _NULL_ONLY})

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Parameters outside this model are refused (400) unless null or a
    no-op value; the schema lists the no-op values and allows other keys only as null.

    Strict: ``"stream": 0`` or ``"n": "2"`` are type errors, not guesses.
    """

    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra=_no_op_schema)

    model: str = Field(description="a served team's name (see /v1/models)")
    messages: Annotated[list[ChatMessage], WithJsonSchema(_messages_schema())] = Field(
        min_length=1,
        description="the conversation: the task is the last user message with text, the rest is context",
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="overrides every agent's temperature")
    max_tokens: _whole_int(1, INT32_MAX) | None = Field(default=None, description="caps every agent call's completion")
    max_completion_tokens: _whole_int(1, INT32_MAX) | None = Field(
        default=None, description="caps every agent call's completion (with max_tokens too: the smaller)"
    )
    seed: _whole_int(INT64_MIN, INT64_MAX) | None = Field(default=None, description="overrides every agent's seed")
    stop: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)]
        | None
    ) = Field(default=None, description="the final text is cut at the first stop sequence")
    n: _whole_int(1, 128) | None = Field(
        default=None, description="independent runs of the team, one choice each (at most the fan-out limit allows)"
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = Field(
        default=None, description="honoured when streaming; a non-streamed completion always has its usage"
    )
    user: str | None = Field(
        default=None, max_length=256, description="the end user, as OpenAI's: stored with the run, never logged"
    )


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
    input: Annotated[
        str | list[ChatMessage],
        WithJsonSchema({"anyOf": [_HAS_TEXT, _messages_schema()], "description": "a task, or a conversation"}),
    ]


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
        if value is None or (name in _NO_OP and json_equal(value, _NO_OP[name])):
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


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers by value (``1 == 1.0``), but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


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
            for key, value in part.items():
                if key not in ("type", "text") and value is not None:
                    raise APIError(
                        400, f"{where}.content[{j}]: only text parts are supported", param=f"{where}.content"
                    )
            parts.append(part["text"])
        texts.append("\n".join(parts))
    return texts


def has_text(text: str) -> bool:
    return _TEXT.search(text) is not None


def conversation_task(messages: list[ChatMessage]) -> str:
    """The team's task for a conversation (see the module docstring for the rule)."""
    texts = message_texts(messages)
    task = next((i for i in reversed(range(len(messages))) if messages[i].role == "user" and has_text(texts[i])), None)
    if task is None:
        raise APIError(400, "the conversation has no user message with text (the task)", param="messages")
    earlier = [(m.role, t) for i, (m, t) in enumerate(zip(messages, texts, strict=True)) if i != task and has_text(t)]
    if not earlier:
        return texts[task]
    lines = [
        "Conversation so far:",
        *(f"[{role}] {text}" for role, text in earlier),
        "",
        "Current message:",
        texts[task],
    ]
    return "\n".join(lines)


def input_task(stored: dict[str, Any]) -> str:
    """The task of a stored run input (``{"input": str}`` or ``{"messages": [...]}``)."""
    if "messages" in stored:
        return conversation_task([ChatMessage.model_validate(m) for m in stored["messages"]])
    return str(stored.get("input", ""))
