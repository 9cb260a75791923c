"""The OpenAI chat-completions wire format, as the simulated server reads and writes it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from hyperteam.testing.sim._http import Connection
    from hyperteam.testing.sim._stream import Stream

MODEL_IDS = ("sim", "sim-0.5", "sim-0.7", "sim-0.8", "sim-0.9")
FINGERPRINT = "hyperteam-sim"
HEALTH_BODY = orjson.dumps({"status": "ok", "simulated": True})
MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "hyperteam-sim"} for m in MODEL_IDS],
        "note": "simulated model: any model name is accepted; sim-ACC sets the accuracy",
    }
)


class Request:
    """One chat completion on its way through the server's queue and service.

    ``state`` is one of ``new``, ``queued``, ``service``, ``hang``, ``done``.
    """

    __slots__ = (
        "arrived",
        "arrived_mono",
        "choices",
        "conn",
        "created",
        "fault",
        "handle",
        "id",
        "in_flight",
        "include_usage",
        "key",
        "messages",
        "model",
        "prompt_tokens",
        "service_s",
        "started_mono",
        "state",
        "stream",
    )

    def __init__(self, conn: Connection, model: str) -> None:
        self.conn = conn
        self.model = model
        self.arrived = time.time()
        self.arrived_mono = time.monotonic()
        self.created = int(self.arrived)
        self.started_mono = 0.0
        self.state = "new"
        self.handle: asyncio.TimerHandle | None = None
        self.choices: list[tuple[str, int, str]] = []  # (text, completion tokens, finish reason)
        self.stream: Stream | None = None
        self.fault: str | None = None
        self.key = ""
        self.messages: list[dict[str, str]] | None = None
        self.id = ""
        self.in_flight = 0
        self.prompt_tokens = 0
        self.service_s = 0.0
        self.include_usage = False

    @property
    def completion_tokens(self) -> int:
        return sum(tokens for _, tokens, _ in self.choices)


def invalid(payload: Any) -> tuple[str | None, str] | None:
    """Returns ``(param, message)`` for a request body the server must refuse, else None."""
    if not isinstance(payload, dict):
        return None, "request body must be a JSON object"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "messages must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}]", f"messages[{i}] must be an object with a role"
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        return "model", "model must be a string"
    n = payload.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= 128):
        return "n", "n must be an integer from 1 to 128"
    temperature = payload.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)):
        return "temperature", "temperature must be a number"
    seed = payload.get("seed")
    if seed is not None and not _is_int(seed):
        return "seed", "seed must be an integer"
    for name in ("max_tokens", "max_completion_tokens"):
        value = payload.get(name)
        if value is not None and (not _is_int(value) or value < 1):
            return name, f"{name} must be a positive integer"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def usage(req: Request) -> dict[str, int]:
    """The OpenAI ``usage`` object of a request."""
    completion = req.completion_tokens
    return {
        "prompt_tokens": req.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": req.prompt_tokens + completion,
    }


def completion_body(req: Request) -> bytes:
    """The OpenAI ``chat.completion`` object of a served request, as JSON."""
    return orjson.dumps(
        {
            "id": req.id,
            "object": "chat.completion",
            "created": req.created,
            "model": req.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i, (text, _, finish) in enumerate(req.choices)
            ],
            "usage": usage(req),
        }
    )


def chunk_event(req: Request, choices: list[dict[str, Any]], *, with_usage: bool = False) -> bytes:
    """One server-sent ``chat.completion.chunk`` event (``data: {...}`` and a blank line)."""
    event: dict[str, Any] = {
        "id": req.id,
        "object": "chat.completion.chunk",
        "created": req.created,
        "model": req.model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    if req.include_usage:
        # OpenAI sends "usage": null on every chunk but the last when usage is asked for.
        event["usage"] = usage(req) if with_usage else None
    return b"data: " + orjson.dumps(event) + b"\n\n"


def delta(index: int, content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One choice of a chunk event."""
    return {"index": index, "delta": content, "logprobs": None, "finish_reason": finish}
