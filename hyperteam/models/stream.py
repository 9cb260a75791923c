"""Streamed chat completions (server-sent events) put back together as one ``chat.completion``.

The client streams its requests so that it can tell a slow answer (tokens
keep arriving) from a hung one (nothing arrives): see
:class:`hyperteam.models.retry.RetryPolicy`. What the caller gets is the same
payload a non-streamed request returns, so caches and parsers see no
difference.
"""

from __future__ import annotations

from typing import Any

import orjson


class StreamError(ValueError):
    """The event stream cannot be read as a chat completion."""


def is_event_stream(headers: dict[str, str] | Any) -> bool:
    return "text/event-stream" in str(headers.get("content-type", "")).lower()


def assemble(body: bytes) -> dict[str, Any]:
    """Joins ``chat.completion.chunk`` events into a ``chat.completion`` payload.

    ``usage`` is the server's (sent in a last chunk where the request asked
    for ``stream_options.include_usage``), or absent. ``x_stream`` says
    whether ``[DONE]`` arrived.

    Raises:
        StreamError: an event is not JSON, or the server sent an error event.
    """
    choices: dict[int, dict[str, Any]] = {}
    payload: dict[str, Any] = {"object": "chat.completion"}
    done = False
    for line in body.split(b"\n"):
        if line[:5] != b"data:":
            continue  # comments (keep-alive pings), event names, blank separators
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamError("a stream event is not JSON") from None
        if not isinstance(event, dict):
            raise StreamError("a stream event is not a JSON object")
        if "error" in event:
            err = event["error"]
            raise StreamError(str(err.get("message", err) if isinstance(err, dict) else err)[:300])
        if "id" in event and "id" not in payload:
            payload["id"] = event["id"]
        if event.get("model"):
            payload["model"] = event["model"]
        if event.get("usage"):
            payload["usage"] = event["usage"]
        for choice in event.get("choices") or ():
            c = choices.setdefault(int(choice.get("index") or 0), {"text": [], "finish": None, "logprobs": []})
            delta = choice.get("delta") or {}
            if delta.get("content"):
                c["text"].append(delta["content"])
            if choice.get("finish_reason"):
                c["finish"] = choice["finish_reason"]
            lp = choice.get("logprobs")
            if isinstance(lp, dict) and lp.get("content"):
                c["logprobs"].extend(lp["content"])
    payload["choices"] = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "".join(c["text"])},
            "finish_reason": c["finish"],
            "logprobs": {"content": c["logprobs"]} if c["logprobs"] else None,
        }
        for i, c in sorted(choices.items())
    ]
    payload["x_stream"] = {"done": done}
    return payload
