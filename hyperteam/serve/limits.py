"""Request limits, all checked before any work: body size, messages, prompt length, fan-out.

The body limit is a middleware that refuses on ``Content-Length`` and also
counts the streamed body (a chunked request has no length), before FastAPI
parses any JSON. The other limits are checked by the routes, on the parsed
request, before a team runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hyperteam.serve.errors import APIError, error_response
from hyperteam.topologies.team import Team

# Extra model calls a fusion makes besides the layer's own agent calls, as a
# function of the number of agents it fuses (upper bounds).
_FUSION_CALLS = {
    "llm_synthesize": lambda n: 1,
    "llm_select": lambda n: 1,
    "judge": lambda n: 1,
    "ranked_vote": lambda n: n,
}


class Limits(BaseModel):
    """What one request may ask of the service.

    Attributes:
        max_body_bytes: the largest request body (413 beyond it).
        max_messages: the most messages in a conversation (422 beyond it).
        max_prompt_chars: the most characters over all messages' text (422 beyond it).
        max_fanout: the most model calls one request may cause: ``n`` times the team's
            calls per run, counted as an upper bound from its spec (400 beyond it).

    Example:
        >>> Limits(max_body_bytes=65536, max_fanout=32)
        Limits(max_body_bytes=65536, max_messages=256, max_prompt_chars=200000, max_fanout=32)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=1 << 20, ge=1)
    max_messages: int = Field(default=256, ge=1)
    max_prompt_chars: int = Field(default=200_000, ge=1)
    max_fanout: int = Field(default=256, ge=1)

    def check_conversation(self, texts: list[str]) -> None:
        """Raises a 422 ``APIError`` if the conversation has too many messages or too much text."""
        if len(texts) > self.max_messages:
            raise APIError(
                422,
                f"too many messages: {len(texts)}, at most {self.max_messages}",
                param="messages",
                code="too_many_messages",
            )
        size = sum(len(t) for t in texts)
        if size > self.max_prompt_chars:
            raise APIError(
                422,
                f"the prompt is too long: {size} characters, at most {self.max_prompt_chars}",
                param="messages",
                code="prompt_too_long",
            )

    def check_fanout(self, team: Team, n: int) -> None:
        """Raises a 400 ``APIError`` if ``n`` runs of ``team`` could make more calls than allowed."""
        calls = max_calls(team)
        if n * calls > self.max_fanout:
            raise APIError(
                400,
                f"n={n} runs of team {team.name!r} (up to {calls} model calls each) exceed the fan-out limit "
                f"of {self.max_fanout} calls per request",
                param="n",
                code="fanout_limit_exceeded",
            )


def max_calls(team: Team) -> int:
    """An upper bound on the model calls of one run of ``team``, from its spec alone.

    Layered teams: each layer's agents once (a debate's up to ``max_rounds``
    times), plus the calls its fusion makes. Hypergraph teams: every agent
    in every round, plus the fusion's calls.
    """
    layers = getattr(team, "layers", None)
    if layers is not None:
        return sum(_layer_calls(len(layer.agents), layer.fusion_impl) for layer in layers)
    agents = getattr(team, "agents", None) or []
    rounds = int(getattr(team, "rounds", 1))
    fusion = getattr(team, "fusion", None)
    extra = 0
    if fusion is not None:
        from hyperteam.fusion import get_fusion

        impl = get_fusion(fusion)
        extra = _FUSION_CALLS.get(impl.name, lambda n: 0)(len(agents))
    return max(1, len(agents) * rounds + extra)


def _layer_calls(agents: int, fusion: Any) -> int:
    rounds = int(getattr(fusion, "max_rounds", 1))
    return agents * rounds + _FUSION_CALLS.get(fusion.name, lambda n: 0)(agents)


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by ``Content-Length`` and while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > limit:
                    await _too_large(limit)(scope, receive, send)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)  # FastAPI re-raises HTTPExceptions met while reading the body
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> Any:
    return error_response(413, f"the request body is larger than {limit} bytes", code="request_too_large")
