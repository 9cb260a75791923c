"""The OpenAI-compatible routes: each served team is a model.

``POST /v1/chat/completions`` runs the team named by ``model`` on the
conversation (see :mod:`hyperteam.serve.schemas` for how messages become the
task) and answers in the ``chat.completion`` shape: the content is the
team's final text, ``usage`` sums every agent call of the run, and an extra
top-level ``hyperteam`` field (ignored by OpenAI clients) carries the run
ids, answers and a trace summary.

Parameters: ``temperature`` and ``seed`` override every agent's setting for
the request; ``max_tokens`` / ``max_completion_tokens`` cap every agent
call; ``stop`` cuts the final text at the first stop sequence; ``n`` runs
the team ``n`` times (within the fan-out limit), one choice each; ``stream``
and ``stream_options.include_usage`` are honoured. Any other parameter is
refused with a 400 naming it, unless null or at the value that changes
nothing (``top_p: 1``, ``logprobs: false``, ...).

Streaming: a role chunk, then the run's agent events as chunks with an
empty delta and a ``hyperteam_event`` field, then the final text in
chunks, a finish chunk, a usage chunk (with ``include_usage``), and
``data: [DONE]``.

A client that goes away (a plain request or a stream) cancels its runs at
once: no model call of them starts after the disconnect, and they are stored
as ``cancelled`` with the error kind ``client_disconnected``. (Runs created
through ``/v1/runs`` go on: outliving the request is their point.) An answer
is sent only once its run is stored.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from enum import Enum
from typing import TYPE_CHECKING, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from hyperteam.models.types import Usage
from hyperteam.serve._json import FastJSONResponse
from hyperteam.serve.errors import APIError, error_responses
from hyperteam.serve.manager import Outcome
from hyperteam.serve.runs import SSE_EVENT, SSE_HEADERS, Owner, get_service
from hyperteam.serve.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    agent_settings,
    check_parameters,
    conversation_task,
    message_texts,
    stop_sequences,
)

if TYPE_CHECKING:
    from hyperteam.serve.app import Service

_SSE_DOC = {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "The completion"}
_INTERNAL_KINDS = {"ConfigError", "ParseError", "LimitError", "internal"}
GONE = {"kind": "client_disconnected", "message": "the client closed the connection before the answer"}


def add_openai_routes(app: FastAPI, team_names: list[str]) -> None:
    """Adds the OpenAI-compatible routes to ``app``."""
    tags: list[str | Enum] = ["openai"]
    example = {"model": team_names[0], "messages": [{"role": "user", "content": "What is 2 + 3?"}]}

    @app.get("/v1/models", tags=tags, response_model=ModelList, responses=error_responses())
    async def list_models(request: Request, owner: Owner) -> JSONResponse:
        """The served teams, as OpenAI models."""
        svc = get_service(request)
        return FastJSONResponse({"object": "list", "data": [_card(svc, name) for name in svc.teams]})

    @app.get("/v1/models/{model_id}", tags=tags, response_model=ModelCard, responses=error_responses(404))
    async def get_model(model_id: str, request: Request, owner: Owner) -> JSONResponse:
        svc = get_service(request)
        svc.team(model_id, param="model")
        return FastJSONResponse(_card(svc, model_id))

    @app.post(
        "/v1/chat/completions",
        tags=tags,
        response_model=ChatCompletion,
        responses={200: _SSE_DOC} | error_responses(400, 404, 409, 500, 502, 503),
    )
    async def chat_completions(
        request: Request,
        owner: Owner,
        body: ChatCompletionRequest = Body(openapi_examples={"team": {"value": example}}),  # noqa: B008
    ) -> Any:
        """Runs the team named by ``model`` on the conversation."""
        svc = get_service(request)
        team = svc.team(body.model, param="model")
        check_parameters(body)
        svc.limits.check_conversation(message_texts(body.messages))
        conversation_task(body.messages)  # refuses a conversation with no task before any work
        n = body.n or 1
        svc.check_n(n)
        svc.limits.check_fanout(team, n)
        run_input: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in body.messages]}
        settings = agent_settings(body)
        if settings:
            run_input["settings"] = settings
        if body.user is not None:
            run_input["user"] = body.user  # stored with the run (its owner sees it), never logged
        runs = []
        try:
            for _ in range(n):
                record, task = await svc.manager.submit(owner, body.model, run_input, announced=False)
                assert task is not None
                runs.append((record.id, task))
        except BaseException:
            _abandon(svc, runs)
            raise
        if body.stream:
            return _ChatStream(_stream(svc, body, runs), lambda: _abandon(svc, runs))
        # The body has been read: the next message is the disconnect, when the client goes away.
        watch = asyncio.ensure_future(_disconnected(request.receive))
        watch.add_done_callback(lambda t: t.cancelled() or t.exception() or _abandon(svc, runs))
        try:
            outcomes = [await svc.manager.wait(task) for _, task in runs]
        except asyncio.CancelledError:  # cancelled with the client (in-process transports)
            _abandon(svc, runs)
            raise
        finally:
            watch.cancel()
        _raise_failure(outcomes)
        _raise_unstored(svc, runs)
        return FastJSONResponse(_completion(body, runs, outcomes))


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (call once the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _abandon(svc: Service, runs: list[tuple[str, Any]]) -> None:
    # Synchronous on purpose: it runs in tasks being cancelled, where an await would not happen.
    for run_id, _ in runs:
        svc.manager.abandon(run_id, GONE)


def _raise_unstored(svc: Service, runs: list[tuple[str, Any]]) -> None:
    if not all(svc.manager.stored(run_id) for run_id, _ in runs):
        raise APIError(500, "the run finished but could not be stored; try again", code="store_error")


class _ChatStream(StreamingResponse):
    """A chat completion's event stream that cancels its runs as soon as the client goes away.

    Starlette's own streaming response notices a disconnect by cancelling the
    body iterator, whose clean-up then cannot await anything. Here ``on_gone``
    (synchronous) is called in two cases, each the only one to see its event:
    a watcher on ``receive`` calls it the moment the disconnect comes, even
    while the stream waits for the runs' next event; and a stream that ends
    before its last message (a send that fails, as ASGI servers of spec 2.4
    raise ``OSError``, or the response cancelled) calls it as it ends.
    """

    def __init__(self, chunks: AsyncIterator[str], on_gone: Any) -> None:
        super().__init__(chunks, headers=SSE_HEADERS, media_type="text/event-stream")
        self._chunks, self._on_gone = chunks, on_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = asyncio.ensure_future(_disconnected(receive))
        watch.add_done_callback(lambda t: t.cancelled() or t.exception() or self._on_gone())
        completed = False
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._chunks:
                if watch.done():
                    break
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            if not watch.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
        except OSError:
            pass  # the client went away: handled below, as any early end
        finally:
            watch.cancel()
            if not completed:
                self._on_gone()
            await self._chunks.aclose()  # type: ignore[attr-defined]


def _card(svc: Service, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": svc.created,
        "owned_by": "hyperteam",
        "description": svc.teams[name].description,
    }


def _raise_failure(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.status == "succeeded":
            continue
        if outcome.status == "interrupted":
            raise APIError(503, "the run was interrupted: the service is stopping", code="run_interrupted")
        if outcome.status == "cancelled":
            raise APIError(409, "the run was cancelled (POST /v1/runs/{id}/cancel)", code="run_cancelled")
        error = outcome.error or {}
        kind = str(error.get("kind", "internal"))
        status = 500 if kind in _INTERNAL_KINDS else 502
        raise APIError(status, f"the team's run failed: {error.get('message', kind)}", code=kind)


def _cut(text: str, stops: list[str]) -> str:
    """The text up to the first stop sequence, as a model stops before it."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _usage_json(outcomes: list[Outcome]) -> dict[str, int]:
    total = Usage()
    for o in outcomes:
        total = total + o.usage
    return {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
    }


def _step(event: dict[str, Any]) -> dict[str, Any]:
    """A trace step without its texts: who, what answer, what it cost."""
    usage = event.get("usage") or {}
    return {
        "kind": event.get("kind"),
        "layer": event.get("layer"),
        "agent": event.get("agent"),
        "answer": event.get("answer"),
        "error": event.get("error"),
        "tokens": usage.get("total_tokens", 0),
        "calls": usage.get("calls", 0),
    }


def _run_summary(run_id: str, outcome: Outcome) -> dict[str, Any]:
    result = outcome.result
    assert result is not None
    return {
        "run_id": run_id,
        "answer": result.answer,
        "simulated": outcome.simulated,
        "wall_s": round(result.wall_s, 6),
        "usage": result.usage.to_dict(),
        "trace": [_step(ev.to_dict()) for ev in result.trace],
    }


def _completion(body: ChatCompletionRequest, runs: list[tuple[str, Any]], outcomes: list[Outcome]) -> dict[str, Any]:
    stops = stop_sequences(body)
    summaries = [_run_summary(run_id, o) for (run_id, _), o in zip(runs, outcomes, strict=True)]
    choices = [
        {
            "index": i,
            "message": {
                "role": "assistant",
                "content": _cut(o.result.text if o.result else "", stops),
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
        for i, o in enumerate(outcomes)
    ]
    return {
        "id": "chatcmpl-" + runs[0][0].removeprefix("run_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": choices,
        "usage": _usage_json(outcomes),
        "system_fingerprint": None,
        "hyperteam": {
            "run_id": summaries[0]["run_id"],
            "answer": summaries[0]["answer"],
            "simulated": any(s["simulated"] for s in summaries),
            "runs": summaries,
        },
    }


def _pieces(text: str, size: int = 64) -> list[str]:
    """The text in chunks of about ``size`` characters, split after whitespace."""
    pieces, current = [], ""
    for word in re.findall(r"\S+\s*|\s+", text):
        if current and len(current) + len(word) > size:
            pieces.append(current)
            current = ""
        current += word
    return [*pieces, current] if current else pieces


async def _stream(svc: Service, body: ChatCompletionRequest, runs: list[tuple[str, Any]]) -> AsyncIterator[str]:
    cid, created = "chatcmpl-" + runs[0][0].removeprefix("run_"), int(time.time())
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }
        if include_usage:
            data.setdefault("usage", None)
        return f"data: {json.dumps(data)}\n\n"

    def delta(i: int, d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": i, "delta": d, "logprobs": None, "finish_reason": finish}]

    queue: asyncio.Queue[tuple[int, int, dict[str, Any] | None]] = asyncio.Queue()

    async def pump(i: int, run_id: str) -> None:
        async for seq, event in svc.manager.follow(run_id):
            if event is not None:
                await queue.put((i, seq, event))
        await queue.put((i, 0, None))

    pumps = [asyncio.create_task(pump(i, run_id)) for i, (run_id, _) in enumerate(runs)]
    try:
        for i in range(len(runs)):
            yield chunk(delta(i, {"role": "assistant", "content": ""}))
        ended = 0
        while ended < len(runs):
            i, seq, event = await queue.get()
            if event is None:
                ended += 1
                continue
            step = {k: v for k, v in event.items() if k != "input"}
            yield chunk(delta(i, {}), hyperteam_event={"run_id": runs[i][0], "seq": seq, **step})
        outcomes = [await svc.manager.wait(task) for _, task in runs]
        try:
            _raise_failure(outcomes)
            _raise_unstored(svc, runs)
        except APIError as exc:
            yield f"data: {json.dumps(exc.body())}\n\n"
            return
        stops = stop_sequences(body)
        for i, ((run_id, _), outcome) in enumerate(zip(runs, outcomes, strict=True)):
            assert outcome.result is not None
            for piece in _pieces(_cut(outcome.result.text, stops)):
                yield chunk(delta(i, {"content": piece}))
            summary = {"run_id": run_id, "answer": outcome.result.answer, "simulated": outcome.simulated}
            yield chunk(delta(i, {}, "stop"), hyperteam=summary)
        if include_usage:
            yield chunk([], usage=_usage_json(outcomes))
        yield "data: [DONE]\n\n"
    finally:  # a client gone mid-stream has had its runs stopped by _ChatStream
        for p in pumps:
            p.cancel()
