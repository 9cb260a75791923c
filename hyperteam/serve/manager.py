"""The run manager: starts team runs as asyncio tasks, persists their events, follows, cancels,
resumes and shuts them down.

Every model call of a run goes through a gate. Cancelling a run closes the
gate first, then cancels the task and waits for it to end, so that once
:meth:`RunManager.stop` returns no further call of that run can reach a
model, even from a step the team's graph had already scheduled.
:meth:`RunManager.abandon` does the same without waiting, for a client that
went away (it must work from code that is itself being cancelled).

A run's task ends only once its final status is in the store: an answer
given from it is durable. The writes of many runs share each commit (see
:class:`_EventLog`), so this costs a request a few milliseconds, not a commit.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from hyperteam.errors import HyperteamError, ModelError
from hyperteam.models.runtime import Runtime
from hyperteam.models.spec import is_simulated
from hyperteam.models.types import ChatModel, ChatRequest, ChatResult, Usage
from hyperteam.serve.errors import APIError
from hyperteam.serve.metrics import Metrics, span
from hyperteam.serve.records import RunRecord, RunStatus, RunStore, WriteFailure
from hyperteam.serve.schemas import input_task
from hyperteam.topologies.result import TeamResult
from hyperteam.topologies.team import Team

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """How a run ended: its status, and the result or the error."""

    status: RunStatus
    result: TeamResult | None = None
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    simulated: bool = False


@dataclass(slots=True)
class _Gate:
    closed: bool = False
    reason: RunStatus = "cancelled"
    detail: dict[str, Any] | None = None  # why it was stopped, stored as the run's error
    usage: Usage = field(default_factory=Usage)
    simulated: bool = False


class _GatedModel:
    """A run's view of a model: refuses calls once the run's gate is closed, and counts usage."""

    def __init__(self, inner: ChatModel, gate: _Gate, team: str, metrics: Metrics) -> None:
        self.name = inner.name
        self._inner, self._gate, self._team, self._metrics = inner, gate, team, metrics
        if is_simulated(inner.name):
            gate.simulated = True

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        if self._gate.closed:
            raise asyncio.CancelledError  # the run was stopped: this call must not reach the model
        self._metrics.llm_calls.labels(self._team).inc()
        result = await self._inner.chat(request, sample_index=sample_index)
        self._gate.usage = self._gate.usage + result.usage
        self._metrics.record_call(self._team, Usage(result.usage.prompt_tokens, result.usage.completion_tokens))
        return result


class _GatedRuntime:
    """The shared runtime as one run sees it: the same clients, each model behind the run's gate."""

    def __init__(self, runtime: Runtime, gate: _Gate, team: str, metrics: Metrics) -> None:
        self._runtime, self._gate, self._team, self._metrics = runtime, gate, team, metrics

    def model(self, spec: str | ChatModel | None) -> ChatModel:
        return _GatedModel(self._runtime.model(spec), self._gate, self._team, self._metrics)


@dataclass(slots=True)
class _Active:
    task: asyncio.Task[Outcome]
    gate: _Gate
    started: bool = False
    finishing: bool = False


class _EventLog:
    """Stores every run's events and status changes in the order they happen, many runs' in one write.

    One writer for the whole service rather than one per run: under load many
    runs finish steps in the same loop tick, and their events and status
    changes go to the store in one call: one SQLite transaction instead of a
    commit per write, which was a quarter of the service's CPU per request
    (bench service). Events of one run keep their order (one queue, written in
    order), and a run's status change is stored with the events before it.

    A write the store cannot take (see ``RunStore.write``'s ``failures``) is
    skipped alone, counted in ``/metrics`` and remembered, so that no answer
    claims a run whose record is not stored (:meth:`stored`). A batch that
    fails as a whole (a locked database) is tried again.
    """

    _RETRIES_S = (0.05, 0.25, 1.0)
    _REMEMBERED = 10_000  # failed run ids kept for stored()

    def __init__(self, store: RunStore, notify: Any, metrics: Metrics, *, interval_s: float = 0.002) -> None:
        self._store, self._notify, self._interval_s, self._metrics = store, notify, interval_s, metrics
        self._failed: dict[str, None] = {}
        self._creates: list[RunRecord] = []
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._updates: list[tuple[str, dict[str, Any]]] = []
        self._put = self._written = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def create(self, record: RunRecord) -> None:
        """Queues a new run (an id nobody else uses), stored before any event."""
        self._creates.append(record)
        self._wake()

    def put(self, run_id: str, event: dict[str, Any]) -> None:
        """Queues an event; the writer stores it once the current loop tick is over."""
        self._pending.append((run_id, event))
        self._wake()

    def update(self, run_id: str, **fields: Any) -> None:
        """Queues a status change (``RunStore.update_run``'s arguments), stored after the run's events so far."""
        self._updates.append((run_id, fields))
        self._wake()

    def _wake(self) -> None:
        self._put += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Returns once every event queued so far is stored."""
        if self._written < self._put:
            done = asyncio.get_running_loop().create_future()
            self._flushes.append((self._put, done))
            await done

    async def _drain(self) -> None:
        # Writes what is queued at once, then at most every ``interval_s`` while more comes: under
        # load a commit then carries a few milliseconds of writes (a commit costs ~150 us of CPU
        # with a request's worth of events on the dev machine, whatever it carries).
        while self._creates or self._pending or self._updates:
            creates, self._creates = self._creates, []
            batch, self._pending = self._pending, []
            updates, self._updates = self._updates, []
            count = len(creates) + len(batch) + len(updates)
            await self._write(creates, batch, updates)
            self._written += count
            for run_id in dict.fromkeys(run_id for run_id, _ in batch):
                self._notify(run_id)
            waiting = []
            for target, done in self._flushes:
                if target > self._written:
                    waiting.append((target, done))
                elif not done.done():
                    done.set_result(None)
            self._flushes = waiting
            # Someone waits for a commit (an answer to send): the next one starts as soon as the loop has
            # run what is ready, carrying every write queued meanwhile; else writes gather for a while.
            await asyncio.sleep(0 if waiting else self._interval_s)

    async def _write(
        self,
        creates: list[RunRecord],
        events: list[tuple[str, dict[str, Any]]],
        updates: list[tuple[str, dict[str, Any]]],
    ) -> None:
        failures: list[WriteFailure] = []
        for retry_s in (*self._RETRIES_S, None):
            failures = []
            try:
                await self._store.write(creates=creates, events=events, updates=updates, failures=failures)
                break
            except Exception as exc:  # the whole batch failed: nothing of it is stored
                if retry_s is None:  # a lost write must not kill the runs
                    failures = [WriteFailure("run", r.id, type(exc).__name__) for r in creates]
                    failures += [WriteFailure("event", run_id, type(exc).__name__) for run_id, _ in events]
                    failures += [WriteFailure("update", run_id, type(exc).__name__) for run_id, _ in updates]
                    break
                logger.warning("run store write failed (%s); trying again in %.2f s", type(exc).__name__, retry_s)
                await asyncio.sleep(retry_s)
        if failures:
            count = len(creates) + len(events) + len(updates)
            errors = sorted({f.error for f in failures})
            logger.error(
                "could not store %d of %d write(s) (%s); the others are stored", len(failures), count, ", ".join(errors)
            )
            for failure in failures:
                self._metrics.store_failures.labels(failure.kind).inc()
                self._failed[failure.run_id] = None
            while len(self._failed) > self._REMEMBERED:
                self._failed.pop(next(iter(self._failed)))

    def stored(self, run_id: str) -> bool:
        """False when a write of the run could not be stored (call after :meth:`flush`)."""
        return run_id not in self._failed


def new_run_id() -> str:
    """``run_`` + the creation time in milliseconds (12 hex digits) + 64 random bits.

    Time-ordered, as UUIDv7: a store's indexes then grow at one end instead of
    at a random page per run, which cut the SQLite store's batch writes. The
    random part keeps ids unguessable (and reading a run needs its owner's key anyway).
    """
    return f"run_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def with_agent_settings(team: Team, settings: dict[str, Any]) -> Team:
    """A copy of ``team`` whose every agent has ``settings`` (temperature, max_tokens, seed) set."""
    if not settings:
        return team

    def patch(agents: list[Any]) -> list[Any]:
        return [a.model_copy(update=settings) for a in agents]

    if "layers" in type(team).model_fields:
        layers = [layer.model_copy(update={"agents": patch(layer.agents)}) for layer in team.layers]  # type: ignore[attr-defined]
        copy = team.model_copy(update={"layers": layers})
    else:
        copy = team.model_copy(update={"agents": patch(team.agents)})  # type: ignore[attr-defined]
    copy._compiled = None
    return copy


class RunManager:
    """Runs served teams in the background and keeps their records and events in ``store``."""

    def __init__(
        self,
        teams: dict[str, Team],
        store: RunStore,
        *,
        runtime: Runtime | None = None,
        model: str | ChatModel | None = None,
        metrics: Metrics | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.teams, self.store, self.runtime, self.model = teams, store, runtime, model
        self.metrics = metrics or Metrics()
        self.poll_s = poll_s
        self.accepting = True
        self._active: dict[str, _Active] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._variants: dict[tuple[str, tuple[tuple[str, Any], ...]], Team] = {}
        self._events = _EventLog(store, self._notify, self.metrics)

    async def sync(self) -> None:
        """Returns once every write queued so far is in the store: call it before reading the store, so
        that a client reads what it was told (a run, its final status) even from the same process."""
        await self._events.flush()

    def stored(self, run_id: str) -> bool:
        """Whether every write of the run so far is in the store (False: one could not be stored)."""
        return self._events.stored(run_id)

    def is_active(self, run_id: str) -> bool:
        return run_id in self._active

    @property
    def active_ids(self) -> list[str]:
        """The ids of the runs executing in this process now."""
        return list(self._active)

    async def submit(
        self,
        owner: str,
        team: str,
        run_input: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        announced: bool = True,
    ) -> tuple[RunRecord, asyncio.Task[Outcome] | None]:
        """Creates and starts a run: returns it and its task (for :meth:`wait`). With an idempotency key
        ``owner`` already used, returns that run and None instead (409 if the request differs).

        ``announced=False`` (chat completions: the client learns the run's id only with its result)
        stores the new run with the run's first events, in one batched write, instead of before
        returning: a request saves a commit of its own.
        """
        if not self.accepting:
            raise APIError(503, "the service is shutting down", code="shutting_down")
        now = time.time()
        record = RunRecord(new_run_id(), team, owner, run_input, "queued", None, None, idempotency_key, now, now)
        if not announced and idempotency_key is None:
            self._events.create(record)
            return record, self._start(record)
        stored, created = await self.store.create_run(record)
        if created:
            return stored, self._start(stored)
        if stored.team != team or stored.input != run_input:
            raise APIError(
                409,
                "this Idempotency-Key was already used with a different request",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return stored, None

    def _start(self, record: RunRecord) -> asyncio.Task[Outcome]:
        gate = _Gate()
        task = asyncio.get_running_loop().create_task(self._execute(record, gate), name=f"hyperteam {record.id}")
        self._active[record.id] = _Active(task, gate)

        def done(_: asyncio.Task[Outcome]) -> None:
            self._active.pop(record.id, None)
            self._notify(record.id)

        task.add_done_callback(done)
        return task

    async def _execute(self, record: RunRecord, gate: _Gate) -> Outcome:
        active = self._active[record.id]
        active.started = True
        self.metrics.in_flight.inc()
        try:
            with span("hyperteam.run", run_id=record.id, team=record.team):
                outcome = await self._run_team(record, gate)
                active.finishing = True
                await self._finish(record, outcome)
        finally:
            self.metrics.in_flight.dec()
        return outcome

    async def _run_team(self, record: RunRecord, gate: _Gate) -> Outcome:
        try:
            if gate.closed:  # stopped before it started
                return Outcome(gate.reason, error=gate.detail)
            team = self._team(record)
            task = input_task(record.input)
            self._events.update(record.id, status="running")
            self._events.put(record.id, {"type": "status", "status": "running"})
            runtime = _GatedRuntime(self.runtime or Runtime.current(), gate, record.team, self.metrics)
            result = await team.run(
                task,
                runtime=cast(Runtime, runtime),
                model=self.model,
                on_event=lambda ev: self._events.put(record.id, {"type": "trace", **ev.to_dict()}),
            )
            return Outcome("succeeded", result, None, result.usage, gate.simulated)
        except asyncio.CancelledError:
            gate.closed = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled: the run ends normally, as cancelled
            return Outcome(gate.reason, error=gate.detail, usage=gate.usage, simulated=gate.simulated)
        except (HyperteamError, APIError) as exc:
            kind = exc.kind if isinstance(exc, ModelError) else type(exc).__name__
            error = {"kind": kind, "message": str(exc.detail if isinstance(exc, APIError) else exc)}
            return Outcome("failed", None, error, gate.usage, gate.simulated)
        except Exception as exc:
            logger.error("run %s failed: %s", record.id, type(exc).__name__)
            logger.debug("run %s failed", record.id, exc_info=True)
            return Outcome("failed", None, {"kind": "internal", "message": "internal error"}, gate.usage)

    async def _finish(self, record: RunRecord, outcome: Outcome) -> None:
        final: dict[str, Any] = {"type": "status", "status": outcome.status}
        result = None
        if outcome.result is not None:
            r = outcome.result
            result = {"answer": r.answer, "text": r.text, "usage": r.usage.to_dict(), "wall_s": round(r.wall_s, 6)}
            result["simulated"] = outcome.simulated
            final["answer"] = r.answer
        if outcome.error is not None:
            final["error"] = outcome.error
        self._events.put(record.id, final)
        self._events.update(
            record.id, status=outcome.status, result=result, error=outcome.error, usage=outcome.usage.to_dict()
        )
        self.metrics.runs.labels(record.team, outcome.status).inc()
        logger.info("run %s %s", record.id, outcome.status, extra={"run_id": record.id, "team": record.team})
        # Durable before anyone is told: the run's task, which answers wait on, ends after its commit
        # (one commit shared with every write queued meanwhile: group commit).
        await self._events.flush()

    def _team(self, record: RunRecord) -> Team:
        team = self.teams.get(record.team)
        if team is None:
            raise APIError(409, f"team {record.team!r} is not served here", param="team")
        settings = record.input.get("settings") or {}
        if not settings:
            return team
        key = (record.team, tuple(sorted(settings.items())))
        variant = self._variants.get(key)
        if variant is None:
            if len(self._variants) >= 64:
                self._variants.pop(next(iter(self._variants)))
            variant = self._variants[key] = with_agent_settings(team, settings)
        return variant

    @staticmethod
    async def wait(task: asyncio.Task[Outcome]) -> Outcome:
        """Waits for a run's task to end (without cancelling the run if the caller is cancelled)."""
        return await asyncio.shield(task)

    async def stop(
        self, run_id: str, reason: RunStatus = "cancelled", detail: dict[str, Any] | None = None
    ) -> Outcome | None:
        """Stops an active run and returns once it has ended: no model call of it happens after this.

        ``detail`` (``{"kind", "message"}``) is stored as the run's error: why it was stopped.
        """
        active = self._active.get(run_id)
        if active is None:
            return None
        self._close(active, reason, detail)
        return await asyncio.shield(active.task)

    def abandon(self, run_id: str, detail: dict[str, Any]) -> None:
        """Cancels an active run at once, without waiting for it to end: from here on none of its
        model calls starts. For a client that went away; it works even from a task being cancelled."""
        active = self._active.get(run_id)
        if active is not None:
            self._close(active, "cancelled", detail)

    @staticmethod
    def _close(active: _Active, reason: RunStatus, detail: dict[str, Any] | None) -> None:
        if not active.finishing and not active.gate.closed:
            active.gate.reason = reason
            active.gate.detail = detail
            active.gate.closed = True  # before anything else: no new call passes from here on
            if active.started:
                active.task.cancel()

    async def resume(self, record: RunRecord) -> None:
        """Runs an interrupted run again, from the start; its events continue after the old ones."""
        if record.id in self._active:
            raise APIError(409, "the run is already running", code="run_active")
        await self.store.update_run(record.id, status="queued")
        self._start(record)

    def _notify(self, run_id: str) -> None:
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()

    async def follow(self, run_id: str, *, after: int = 0) -> AsyncIterator[tuple[int, dict[str, Any] | None]]:
        """The run's events after ``after``, then live ones until it ends. ``(0, None)`` is a heartbeat,
        yielded after ``poll_s`` with nothing new (the store is polled too: another replica may run it)."""
        waiters = self._waiters.setdefault(run_id, set())
        waiter = asyncio.Event()
        waiters.add(waiter)
        try:
            while True:
                waiter.clear()
                await self.sync()
                events = await self.store.events(run_id, after=after)
                for seq, event in events:
                    after = seq
                    yield seq, event
                if events:
                    continue
                if run_id not in self._active:
                    record = await self.store.get_run(run_id)
                    if record is None or record.status not in ("queued", "running"):
                        return
                try:
                    await asyncio.wait_for(waiter.wait(), self.poll_s)
                except TimeoutError:
                    yield 0, None
        finally:
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(run_id, None)

    async def startup(self) -> list[str]:
        """Marks runs a stopped service left unfinished as ``interrupted`` (resumable); accepts runs."""
        self.accepting = True
        ids = await self.store.interrupt_unfinished()
        if ids:
            logger.info("%d unfinished run(s) marked interrupted; POST /v1/runs/{id}/resume runs one again", len(ids))
        return ids

    async def shutdown(self, grace_s: float) -> None:
        """Stops accepting runs, lets active ones finish within ``grace_s``, then interrupts the rest."""
        self.accepting = False
        tasks = [a.task for a in self._active.values()]
        if tasks:
            logger.info("shutdown: waiting up to %.1f s for %d run(s)", grace_s, len(tasks))
            await asyncio.wait(tasks, timeout=grace_s)
        left = list(self._active)
        if left:
            logger.warning("shutdown: interrupting %d run(s)", len(left))
            await asyncio.gather(*(self.stop(run_id, "interrupted") for run_id in left), return_exceptions=True)
        await self.sync()
