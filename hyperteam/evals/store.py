"""The result store: one SQLite row per problem, written the moment the problem finishes.

WAL mode with ``synchronous=NORMAL``: each row is committed on its own, and a
process killed at any moment (``kill -9``) loses at most the problems still
in flight, never a finished one. ``--resume`` reads the finished ids back and
runs only what is missing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    problem_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    question TEXT NOT NULL,
    gold TEXT NOT NULL,
    prediction TEXT NOT NULL,
    answer_strict TEXT,
    answer_flexible TEXT,
    correct_strict INTEGER NOT NULL,
    correct_flexible INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    error_kind TEXT,
    error TEXT,
    trace TEXT NOT NULL,
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(slots=True)
class ResultRow:
    """One problem's result, as stored.

    ``trace`` is the list of trace events as dicts (see ``TraceEvent.to_dict``);
    ``error_kind`` is set when the problem failed (then it is not correct).
    """

    problem_id: str
    idx: int
    question: str
    gold: str
    prediction: str
    answer_strict: str | None
    answer_flexible: str | None
    correct_strict: bool
    correct_flexible: bool
    prompt_tokens: int
    completion_tokens: int
    calls: int
    latency_s: float
    error_kind: str | None = None
    error: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = 0.0


_COLUMNS = [f.name for f in fields(ResultRow)]
_INSERT = f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class ResultStore:
    """Results of one eval run in a SQLite file (table ``results``, keyed by ``problem_id``).

    Example:
        >>> store = ResultStore(":memory:")
        >>> store.done_ids()
        set()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot use {self.path} as a result store: {exc}") from None

    def add(self, row: ResultRow) -> bool:
        """Stores a finished problem; False if that problem was already stored (nothing changes)."""
        if not row.finished_at:
            row.finished_at = time.time()
        values = asdict(row)
        values["trace"] = json.dumps(row.trace, ensure_ascii=False)
        values["correct_strict"] = int(row.correct_strict)
        values["correct_flexible"] = int(row.correct_flexible)
        try:
            self._db.execute(_INSERT, [values[c] for c in _COLUMNS])
        except sqlite3.IntegrityError:
            return False
        return True

    def done_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT problem_id FROM results")}

    def rows(self) -> list[ResultRow]:
        """Every stored result, in suite order."""
        cur = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM results ORDER BY idx")
        out = []
        for values in cur:
            row = ResultRow(*values)
            row.correct_strict = bool(row.correct_strict)
            row.correct_flexible = bool(row.correct_flexible)
            row.trace = json.loads(values[_COLUMNS.index("trace")])
            out.append(row)
        return out

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v, ensure_ascii=False)) for k, v in values.items()],
        )

    def close(self) -> None:
        self._db.close()
