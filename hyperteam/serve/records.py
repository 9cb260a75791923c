"""What the service persists about a run, and the store interface both backends implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(slots=True)
class RunRecord:
    """One run of a served team.

    Attributes:
        id: ``run_`` + random hex.
        team: the served team's name.
        owner: a hash identifying the API key that created the run (never the key).
        input: the request as given (``{"messages": [...]}`` or ``{"input": "..."}``).
        status: see :data:`RunStatus`; ``interrupted`` marks a run the service
            stopped in the middle of (restart) and can resume.
        result: the team's result (answer, text, usage) once succeeded.
        error: ``{"kind", "message"}`` once failed.
        idempotency_key: the client's ``Idempotency-Key``, unique per owner.
    """

    id: str
    team: str
    owner: str
    input: dict[str, Any]
    status: RunStatus = "queued"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class WriteFailure:
    """One write of a batch that could not be stored: ``kind`` is ``run``, ``event`` or ``update``,
    ``error`` the exception's type name (never its text, which can quote the record)."""

    kind: Literal["run", "event", "update"]
    run_id: str
    error: str


class RunStore(Protocol):
    """Persistence of runs and their events. SQLite by default; PostgreSQL for several replicas."""

    async def create_run(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Stores a new run; with an idempotency key already used by the same owner, returns
        the existing run and False instead (atomically: concurrent calls create one run)."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None: ...

    async def append_event(self, run_id: str, event: dict[str, Any]) -> int:
        """Appends an event (agent call, fusion, status change); returns its sequence number (1, 2, ...)."""
        ...

    async def write(
        self,
        *,
        creates: Sequence[RunRecord] = (),
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        updates: Sequence[tuple[str, dict[str, Any]]] = (),
        failures: list[WriteFailure] | None = None,
    ) -> list[int | None]:
        """Many writes at once, in this order: new runs (ids not in use), (run id, event) pairs appended in
        order, then (run id, ``update_run`` keyword arguments) status changes (a missing run is skipped).
        Returns the events' sequence numbers (None: no such run, or not stored).

        With ``failures``, a write that cannot be stored (a value the store cannot encode, an id in
        use) is skipped and appended there, and the rest of the batch is stored: one bad record never
        takes other runs' writes down with it. Without it, such a write fails the call."""
        ...

    async def events(self, run_id: str, *, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The run's events with a sequence number above ``after``, in order."""
        ...

    async def interrupt_unfinished(self) -> list[str]:
        """Marks runs left ``queued`` or ``running`` (by a stopped service) as ``interrupted``; returns their ids."""
        ...

    async def close(self) -> None: ...
