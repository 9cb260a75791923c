"""The SQLite run store: the default for a single service process.

WAL mode with ``synchronous=NORMAL``: a commit is a write to the WAL without
an fsync. Single calls take tens of microseconds and run on the event loop
directly, on one connection: handing each call to a thread
(``asyncio.to_thread``) measured several times slower. Each method is one
statement (or one transaction) with no ``await`` inside, so coroutines never
see each other's half-done writes. That includes :meth:`write`, the
service's batched writes (runs, events and status changes of many requests in
one transaction): on a loaded 2-core machine a writer thread measured worse,
since every answer waited for two thread hand-offs on busy cores (its commit
wait's p99 was 14-28 ms against 7-8.5 ms inline) and a checkpointer thread
beside it made that worse still (26-40 ms).

The WAL is checkpointed every ``wal_autocheckpoint = 250`` pages (SQLite's
default is 1000): a checkpoint runs inside the commit that passes the mark,
and four times smaller ones cut the batch write's p99 from 5.7 to 3.5 ms.
Run ids are time-ordered (``hyperteam.serve.manager.new_run_id``), so a
batch appends to the right edge of the ``runs`` id index and of
``run_events`` instead of dirtying a random page per run (batch write p50
0.51 -> 0.38 ms).

Other processes may open the same file (WAL lets readers run beside a writer);
writers wait for each other up to ``busy_timeout``, and the event loop with
them. For several replicas, use PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from hyperteam.errors import ConfigError
from hyperteam.serve.records import RunRecord, RunStatus, WriteFailure

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    usage TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (owner, idempotency_key)
);
CREATE INDEX IF NOT EXISTS runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

_COLUMNS = "id, team, owner, idempotency_key, input, status, result, error, usage, created_at, updated_at"
_INSERT_RUN = (
    f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (owner, idempotency_key) DO NOTHING"
)
_UPDATE = (
    "UPDATE runs SET status = ?, result = coalesce(?, result), error = coalesce(?, error),"
    " usage = coalesce(?, usage), updated_at = ? WHERE id = ?"
)
# One statement, so SQLite takes the write lock before reading max(seq): two
# connections appending to the same run cannot both read the same maximum.
_APPEND = (
    "INSERT INTO run_events (run_id, seq, event, created_at)"
    " SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM run_events WHERE run_id = ?1 RETURNING seq"
)


_INSERT_EVENT = "INSERT INTO run_events (run_id, seq, event, created_at) VALUES (?, ?, ?, ?)"

# What one record can fail with (it cannot be encoded or bound, or breaks a constraint) without
# the transaction failing; anything else (a locked or full database) fails the whole batch.
_BAD_RECORD = (TypeError, ValueError, OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError)


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _last_seqs(db: sqlite3.Connection, run_ids: set[str]) -> dict[str, int]:
    """Each existing run's last event number (0 for none); a run that does not exist is left out.

    Read inside the batch's ``BEGIN IMMEDIATE``: the write lock is held, so no other connection can
    append to these runs before the batch's events are inserted with the numbers that follow."""
    last: dict[str, int] = {}
    ids = sorted(run_ids)
    for i in range(0, len(ids), 500):  # well under SQLite's limit on bound parameters
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        last.update(
            db.execute(
                f"SELECT id, (SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = runs.id)"
                f" FROM runs WHERE id IN ({marks})",
                chunk,
            ).fetchall()
        )
    return last


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _record(row: tuple[Any, ...]) -> RunRecord:
    run_id, team, owner, key, input_, status, result, error, usage, created_at, updated_at = row
    return RunRecord(
        id=run_id,
        team=team,
        owner=owner,
        input=_loads(input_),
        status=status,
        result=_loads(result),
        error=_loads(error),
        idempotency_key=key,
        created_at=created_at,
        updated_at=updated_at,
        usage=_loads(usage),
    )


def _row(record: RunRecord, now: float) -> tuple[Any, ...]:
    created_at = record.created_at or now
    return (
        record.id,
        record.team,
        record.owner,
        record.idempotency_key,
        _dumps(record.input),
        record.status,
        _dumps(record.result),
        _dumps(record.error),
        _dumps(record.usage),
        created_at,
        record.updated_at or created_at,
    )


class SQLiteRunStore:
    """Runs and their events in one SQLite file (tables ``runs`` and ``run_events``).

    Args:
        path: the database file (its folder is created), or ``":memory:"``.
        busy_timeout: seconds a write waits for another process's write to finish.

    Raises:
        ConfigError: the file cannot be opened or is not a SQLite database.

    Example:
        >>> import asyncio
        >>> store = SQLiteRunStore(":memory:")
        >>> run, created = asyncio.run(store.create_run(RunRecord(id="run_1", team="t", owner="o", input={})))
        >>> (run.status, created)
        ('queued', True)
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise ConfigError(f"cannot use {self.path} as a run store: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=250")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    async def open(self) -> None:
        """Nothing to do (the file is opened by the constructor); here to match the PostgreSQL store."""

    async def create_run(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Stores a new run, or returns the run that already has its (owner, idempotency key).

        ``created_at`` and ``updated_at`` are set to now where they are 0.

        Returns:
            The stored run and True, or the existing run and False.

        Raises:
            ValueError: a run with this id already exists.
        """
        row = _row(record, time.time())
        try:
            inserted = self._db.execute(_INSERT_RUN, row).rowcount == 1
        except sqlite3.IntegrityError:
            raise ValueError(f"a run with id {record.id!r} already exists") from None
        if inserted:
            return _record(row), True
        existing = self._db.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE owner = ? AND idempotency_key = ?",
            (record.owner, record.idempotency_key),
        ).fetchone()
        return _record(existing), False

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or None."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

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
        cur = self._db.execute(_UPDATE, self._update_params(run_id, status, result, error, usage))
        if cur.rowcount == 0:
            raise KeyError(run_id)

    @staticmethod
    def _update_params(
        run_id: str,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> tuple[Any, ...]:
        return (status, _dumps(result), _dumps(error), _dumps(usage), time.time(), run_id)

    async def append_event(self, run_id: str, event: dict[str, Any]) -> int:
        """Appends an event to the run; returns its sequence number (1, 2, ...).

        Raises:
            KeyError: no run has this id.
        """
        try:
            # fetchall, not fetchone: the statement must run to its end to commit.
            ((seq,),) = self._db.execute(_APPEND, (run_id, _dumps(event), time.time())).fetchall()
        except sqlite3.IntegrityError:
            raise KeyError(run_id) from None
        return seq

    async def write(
        self,
        *,
        creates: Sequence[RunRecord] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        updates: Sequence[tuple[str, dict[str, Any]]] = (),
        failures: list[WriteFailure] | None = None,
    ) -> list[int | None]:
        """Many writes in one transaction, in this order: new runs, (run id, event) pairs appended in
        order, then (run id, keyword arguments of :meth:`update_run`) status changes (a missing run is
        skipped). Returns the events' sequence numbers (None for a run that does not exist).

        One commit for a batch: a service under load writes the runs, events and status changes of many
        requests at once (see ``hyperteam.serve.manager``), and a commit is most of a write's cost.
        Events and updates are encoded first and written with one ``executemany`` each. With
        ``failures``, a write SQLite or the encoder refuses is skipped and listed there, and the rest
        of the batch is stored.

        Raises:
            ValueError: a new run's id is already in use (without ``failures``: nothing of the batch is written).
        """
        db, now = self._db, time.time()

        def refuse(kind: Literal["run", "event", "update"], run_id: str, error: str, exc: BaseException) -> None:
            if failures is None:
                raise exc
            failures.append(WriteFailure(kind, run_id, error))

        seqs: list[int | None] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            lost: set[str] = set()  # runs whose creation failed: their events and updates have nowhere to go
            for record in creates:
                try:
                    db.execute(_INSERT_RUN, _row(record, now))
                except sqlite3.IntegrityError:
                    lost.add(record.id)
                    in_use = ValueError(f"a run with id {record.id!r} already exists")
                    refuse("run", record.id, "IntegrityError", in_use)
                except _BAD_RECORD as exc:
                    lost.add(record.id)
                    refuse("run", record.id, type(exc).__name__, exc)
            last = _last_seqs(db, {run_id for run_id, _ in events})
            rows: list[tuple[Any, ...]] = []
            for run_id, event in events:
                seq = None
                if run_id not in last:  # no such run: skipped (a failure only when its creation failed here)
                    if run_id in lost and failures is not None:
                        failures.append(WriteFailure("event", run_id, "missing run"))
                else:
                    try:
                        text = _dumps(event)
                    except _BAD_RECORD as exc:
                        refuse("event", run_id, type(exc).__name__, exc)
                    else:
                        seq = last[run_id] = last[run_id] + 1
                        rows.append((run_id, seq, text, now))
                seqs.append(seq)
            db.executemany(_INSERT_EVENT, rows)
            changes = []
            for run_id, fields in updates:
                try:
                    changes.append(self._update_params(run_id, **fields))
                except _BAD_RECORD as exc:
                    refuse("update", run_id, type(exc).__name__, exc)
                else:
                    if run_id in lost and failures is not None:
                        failures.append(WriteFailure("update", run_id, "missing run"))
            db.executemany(_UPDATE, changes)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return seqs

    async def events(self, run_id: str, *, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's events with a sequence number above ``after``, in order."""
        cur = self._db.execute(
            "SELECT seq, event FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after)
        )
        return [(seq, orjson.loads(event)) for seq, event in cur]

    async def interrupt_unfinished(self) -> list[str]:
        """Marks every ``queued`` or ``running`` run as ``interrupted``; returns their ids."""
        rows = self._db.execute(
            "UPDATE runs SET status = 'interrupted', updated_at = ? WHERE status IN ('queued', 'running') RETURNING id",
            (time.time(),),
        ).fetchall()
        return sorted(run_id for (run_id,) in rows)

    async def close(self) -> None:
        """Closes the connection (idempotent)."""
        self._db.close()
