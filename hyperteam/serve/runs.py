"""The runs API, for long work: create a run (idempotently), read it, stream its events, cancel
it, resume it.

A run is visible only to the API key that created it; any other key gets a
404, as if it did not exist. Runs the service left unfinished when it
stopped are marked ``interrupted`` at start-up and run again only when a
client asks (``POST /v1/runs/{id}/resume``): restarting them automatically
would spend tokens nobody may want any more, and could repeat a run that
brought the service down.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hyperteam.serve._json import FastJSONResponse
from hyperteam.serve.auth import current_owner
from hyperteam.serve.errors import APIError, error_responses
from hyperteam.serve.records import FINAL_STATUSES, RunRecord
from hyperteam.serve.schemas import Run, RunCreate, conversation_task, has_text, message_texts

if TYPE_CHECKING:
    from hyperteam.serve.app import Service

Owner = Annotated[str, Depends(current_owner)]


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


# One server-sent event, as OpenAPI 3.2 describes an event stream's items.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_SSE_DOC = {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "Server-sent events"}
# An event id as this service sends them: a sequence number, within 64 bits with room to spare.
_EVENT_ID = re.compile(r"^[0-9]{1,18}$")
# An idle event stream gets a keep-alive comment every this many idle polls of the run manager
# (15 s at its default 1 s poll): often enough that proxies do not time the stream out.
KEEPALIVE_POLLS = 15


def get_service(request: Request) -> Service:
    return request.app.state.service


def run_json(record: RunRecord, trace: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's view of a run (the owner and idempotency key stay internal)."""
    return {
        "id": record.id,
        "object": "run",
        "team": record.team,
        "status": record.status,
        "input": record.input,
        "result": record.result,
        "usage": record.usage or {},
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "trace": trace or [],
    }


async def owned_run(svc: Service, run_id: str, owner: str) -> RunRecord:
    await svc.manager.sync()
    record = await svc.store.get_run(run_id)
    if record is None or record.owner != owner:
        raise APIError(404, "no such run", param="run_id", code="run_not_found")  # the id is not echoed
    return record


async def _trace(svc: Service, run_id: str) -> list[dict[str, Any]]:
    await svc.manager.sync()
    return [ev for _, ev in await svc.store.events(run_id) if ev.get("type") == "trace"]


def add_run_routes(app: FastAPI) -> None:
    """Adds the runs API to ``app`` (on the app itself: its route list stays flat and inspectable)."""
    tags: list[str | Enum] = ["runs"]

    @app.post(
        "/v1/runs",
        tags=tags,
        status_code=201,
        response_model=Run,
        responses={200: {"model": Run, "description": "The run an earlier request with this key created"}}
        | error_responses(400, 404, 409, 503),
    )
    async def create_run(
        body: RunCreate,
        request: Request,
        owner: Owner,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
    ) -> JSONResponse:
        """Starts a run of ``team`` on ``input``; the same ``Idempotency-Key`` returns the same run."""
        svc = get_service(request)
        team = svc.team(body.team, param="team")
        if isinstance(body.input, str):
            if not has_text(body.input):
                raise APIError(400, "input is empty", param="input")
            svc.limits.check_conversation([body.input])
            run_input: dict[str, Any] = {"input": body.input}
        else:
            if not body.input:
                raise APIError(400, "input has no messages", param="input")
            svc.limits.check_conversation(message_texts(body.input))
            conversation_task(body.input)
            run_input = {"messages": [m.model_dump(exclude_none=True) for m in body.input]}
        svc.limits.check_fanout(team, 1)
        record, task = await svc.manager.submit(owner, body.team, run_input, idempotency_key=idempotency_key or None)
        return FastJSONResponse(run_json(record), status_code=201 if task is not None else 200)

    @app.get("/v1/runs/{run_id}", tags=tags, response_model=Run, responses=error_responses(404))
    async def get_run(run_id: str, request: Request, owner: Owner) -> JSONResponse:
        """The run's status, result, usage, error and trace so far."""
        svc = get_service(request)
        record = await owned_run(svc, run_id, owner)
        return FastJSONResponse(run_json(record, await _trace(svc, run_id)))

    @app.get(
        "/v1/runs/{run_id}/events",
        tags=tags,
        responses={200: _SSE_DOC} | error_responses(400, 404),
    )
    async def run_events(
        run_id: str,
        request: Request,
        owner: Owner,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                json_schema_extra={"pattern": _EVENT_ID.pattern},  # checked below, after the run's owner: a 400
                description="the id of the last event received: the stream resumes after it",
            ),
        ] = None,
    ) -> StreamingResponse:
        """Server-sent events: the run's past events, then live ones until it ends.

        Each event has ``id`` (its sequence number; send it back as ``Last-Event-ID``
        to resume), ``event`` (``status`` or ``trace``) and JSON ``data``.
        """
        svc = get_service(request)
        await owned_run(svc, run_id, owner)
        if last_event_id is not None and not _EVENT_ID.match(last_event_id):
            raise APIError(
                400,
                "Last-Event-ID must be the id of an event of this stream (digits)",
                param="Last-Event-ID",
                code="invalid_last_event_id",
            )
        return EventStream(_sse(svc, run_id, int(last_event_id or 0)), headers=SSE_HEADERS)

    @app.post("/v1/runs/{run_id}/cancel", tags=tags, response_model=Run, responses=error_responses(404, 409))
    async def cancel_run(run_id: str, request: Request, owner: Owner) -> JSONResponse:
        """Cancels the run. Answers once it has stopped: after this, none of its model calls starts."""
        svc = get_service(request)
        record = await owned_run(svc, run_id, owner)
        if record.status in FINAL_STATUSES:
            raise APIError(409, f"the run has already ended ({record.status})", param="run_id", code="run_finished")
        if svc.manager.is_active(run_id):
            await svc.manager.stop(run_id, "cancelled")
        else:  # interrupted (or left by another process): nothing runs; make it final
            await svc.store.update_run(run_id, status="cancelled")
        record = await owned_run(svc, run_id, owner)
        return FastJSONResponse(run_json(record, await _trace(svc, run_id)))

    @app.post("/v1/runs/{run_id}/resume", tags=tags, response_model=Run, responses=error_responses(404, 409, 503))
    async def resume_run(run_id: str, request: Request, owner: Owner) -> JSONResponse:
        """Runs an ``interrupted`` run again from the start (its new events follow the old ones)."""
        svc = get_service(request)
        record = await owned_run(svc, run_id, owner)
        if record.status != "interrupted":
            raise APIError(
                409, f"only interrupted runs resume; this one is {record.status}", code="run_not_interrupted"
            )
        if not svc.manager.accepting:
            raise APIError(503, "the service is shutting down", code="shutting_down")
        svc.team(record.team, param="team")
        await svc.manager.resume(record)
        record = await owned_run(svc, run_id, owner)
        return FastJSONResponse(run_json(record))


async def _sse(svc: Service, run_id: str, after: int) -> AsyncIterator[str]:
    idle = 0
    async for seq, event in svc.manager.follow(run_id, after=after):
        if event is None:
            idle += 1
            if idle % KEEPALIVE_POLLS == 0:
                yield ": keep-alive\n\n"  # a comment, ignored by clients, that keeps proxies from timing out
            continue
        idle = 0
        yield f"id: {seq}\nevent: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n"
