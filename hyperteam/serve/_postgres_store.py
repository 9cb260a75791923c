"""The PostgreSQL run store: for several service replicas sharing one database.

psycopg 3 (async) with a connection pool, in autocommit: every method is a
single statement, so it holds no transaction open across an ``await``.

* ``create_run`` is ``INSERT ... ON CONFLICT (owner, idempotency_key) DO
  NOTHING``; when it inserts nothing, the run that won is read back. Under
  READ COMMITTED the insert waits for a concurrent one with the same key to
  commit, so the read back always finds it.
* ``append_event`` bumps a per-run counter (``runs.last_seq``) and inserts the
  event in one statement. The counter's row lock serialises appends to one run
  across replicas, so sequence numbers are unique and gapless and commit in
  order: a reader following ``events(after=n)`` never sees ``n + 2`` before
  ``n + 1``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hyperteam.errors import ConfigError
from hyperteam.serve.records import RunRecord, RunStatus, WriteFailure
from hyperteam.serve.store import _redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    input JSONB NOT NULL,
    status TEXT NOT NULL,
    result JSONB,
    error JSONB,
    usage JSONB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    UNIQUE (owner, idempotency_key)
);
CREATE INDEX IF NOT EXISTS runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    event JSONB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""
# Replicas starting together would race on CREATE TABLE IF NOT EXISTS (it is
# not atomic in PostgreSQL); a transaction-scoped advisory lock lines them up.
_SCHEMA_LOCK = 0x68797065_7274  # "hypert"

_COLUMNS = "id, team, owner, idempotency_key, input, status, result, error, usage, created_at, updated_at"
_INSERT_RUN = (
    f"INSERT INTO runs ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    f" ON CONFLICT (owner, idempotency_key) DO NOTHING RETURNING {_COLUMNS}"
)
_APPEND = (
    "WITH bumped AS (UPDATE runs SET last_seq = last_seq + 1 WHERE id = %(run)s RETURNING last_seq)"
    " INSERT INTO run_events (run_id, seq, event, created_at)"
    " SELECT %(run)s, last_seq, %(event)s, %(now)s FROM bumped RETURNING seq"
)


# What one write can fail with and leave the others to go on (see ``write``).
_BAD_RECORD = (TypeError, ValueError, OverflowError, psycopg.Error)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, _dumps)


def _record(row: tuple[Any, ...]) -> RunRecord:
    run_id, team, owner, key, input_, status, result, error, usage, created_at, updated_at = row
    return RunRecord(
        id=run_id,
        team=team,
        owner=owner,
        input=input_,
        status=status,
        result=result,
        error=error,
        idempotency_key=key,
        created_at=created_at,
        updated_at=updated_at,
        usage=usage,
    )


class PostgresRunStore:
    """Runs and their events in PostgreSQL (tables ``runs`` and ``run_events``, created if missing).

    The pool connects on :meth:`open`, or on the first call that needs it.

    Args:
        url: a libpq URL, ``postgresql://user:password@host:5432/db``.
        min_size: connections the pool keeps open.
        max_size: the most connections the pool opens.
        connect_timeout: seconds to wait for the server when opening.

    Example:
        >>> store = PostgresRunStore("postgresql://hyperteam@db:5432/hyperteam")
        >>> # await store.open(); await store.create_run(RunRecord(...))
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.url = url
        self._connect_timeout = connect_timeout
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            open=False,
            name="hyperteam-runs",
        )
        self._opened = False
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        """Connects, and creates the tables if they are missing (idempotent).

        Raises:
            ConfigError: the server cannot be reached or refuses the connection.
        """
        async with self._opening:
            if self._opened:
                return
            try:
                # A direct connection first: its error says why (refused, auth, no such
                # database), where the pool's would only say that it timed out.
                timeout = max(1, round(self._connect_timeout))
                async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=timeout) as conn:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                        await conn.execute(_SCHEMA)
                await self._pool.open(wait=True, timeout=self._connect_timeout)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise ConfigError(f"cannot open the run store {_redact(self.url)}: {exc}") from None
            self._opened = True

    async def _fetch(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        if not self._opened:
            await self.open()
        async with self._pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def _execute(self, query: str, params: Any) -> int:
        """Runs a statement that returns no rows; returns how many rows it changed."""
        if not self._opened:
            await self.open()
        async with self._pool.connection() as conn:
            return (await conn.execute(query, params)).rowcount

    async def create_run(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Stores a new run, or returns the run that already has its (owner, idempotency key).

        ``created_at`` and ``updated_at`` are set to now where they are 0.

        Returns:
            The stored run and True, or the existing run and False.

        Raises:
            ValueError: a run with this id already exists.
        """
        created_at = record.created_at or time.time()
        params = (
            record.id,
            record.team,
            record.owner,
            record.idempotency_key,
            _json(record.input),
            record.status,
            _json(record.result),
            _json(record.error),
            _json(record.usage),
            created_at,
            record.updated_at or created_at,
        )
        try:
            rows = await self._fetch(_INSERT_RUN, params)
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"a run with id {record.id!r} already exists") from None
        if rows:
            return _record(rows[0]), True
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM runs WHERE owner = %s AND idempotency_key = %s",
            (record.owner, record.idempotency_key),
        )
        return _record(rows[0]), False

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or None."""
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM runs WHERE id = %s", (run_id,))
        return _record(rows[0]) if rows else None

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """Sets the status, and ``result``, ``error``, ``usage`` where given (None keeps the stored value).

        Raises:
            KeyError: no run has this id.
        """
        count = await self._execute(
            "UPDATE runs SET status = %s, result = coalesce(%s, result), error = coalesce(%s, error),"
            " usage = coalesce(%s, usage), updated_at = %s WHERE id = %s",
            (status, _json(result), _json(error), _json(usage), time.time(), run_id),
        )
        if count == 0:
            raise KeyError(run_id)

    async def append_event(self, run_id: str, event: dict[str, Any]) -> int:
        """Appends an event to the run; returns its sequence number (1, 2, ...).

        Raises:
            KeyError: no run has this id.
        """
        rows = await self._fetch(_APPEND, {"run": run_id, "event": _json(event), "now": time.time()})
        if not rows:
            raise KeyError(run_id)
        return rows[0][0]

    async def write(
        self,
        *,
        creates: Sequence[RunRecord] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        updates: Sequence[tuple[str, dict[str, Any]]] = (),
        failures: list[WriteFailure] | None = None,
    ) -> list[int | None]:
        """Many writes, in this order: new runs, (run id, event) pairs appended in order, then (run id,
        keyword arguments of :meth:`update_run`) status changes (a missing run is skipped). Returns the
        events' sequence numbers (None: no such run, or not stored).

        One statement each, in autocommit like every other method, so that no
        transaction holds a run's counter locked across network round trips. With
        ``failures``, a statement that fails (a value PostgreSQL or the encoder
        refuses, such as a NUL character in JSONB, or a lost connection) is listed
        there and the others go on: what was written stays written, and no retry
        can append an event twice.

        Raises:
            ValueError: a new run's id is already in use (without ``failures``).
        """
        isolate = failures is not None

        def failed(kind: Any, run_id: str, exc: BaseException) -> None:
            if not isolate:
                raise exc
            assert failures is not None
            failures.append(WriteFailure(kind, run_id, type(exc).__name__))

        lost: set[str] = set()
        for record in creates:
            try:
                await self.create_run(record)
            except _BAD_RECORD as exc:
                lost.add(record.id)
                failed("run", record.id, exc)
        seqs: list[int | None] = []
        for run_id, event in events:
            seq = None
            try:
                seq = await self.append_event(run_id, event)
            except KeyError:
                if run_id in lost and failures is not None:
                    failures.append(WriteFailure("event", run_id, "missing run"))
            except _BAD_RECORD as exc:
                failed("event", run_id, exc)
            seqs.append(seq)
        for run_id, fields in updates:
            try:
                await self.update_run(run_id, **fields)
            except KeyError:
                if run_id in lost and failures is not None:
                    failures.append(WriteFailure("update", run_id, "missing run"))
            except _BAD_RECORD as exc:
                failed("update", run_id, exc)
        return seqs

    async def events(self, run_id: str, *, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's events with a sequence number above ``after``, in order."""
        rows = await self._fetch(
            "SELECT seq, event FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq", (run_id, after)
        )
        return [(seq, event) for seq, event in rows]

    async def interrupt_unfinished(self) -> list[str]:
        """Marks every ``queued`` or ``running`` run as ``interrupted``; returns their ids.

        With several replicas this also interrupts the runs the other replicas are
        running: call it only when every replica was stopped.
        """
        rows = await self._fetch(
            "UPDATE runs SET status = 'interrupted', updated_at = %s"
            " WHERE status IN ('queued', 'running') RETURNING id",
            (time.time(),),
        )
        return sorted(run_id for (run_id,) in rows)

    async def close(self) -> None:
        """Closes the pool (idempotent)."""
        await self._pool.close()
        self._opened = False
