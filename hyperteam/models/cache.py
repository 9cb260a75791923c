"""A SQLite response cache keyed by the full request plus a sample index.

The sample index keeps n samples of one request at temperature > 0 apart:
without it, a cache would hand back the first sample n times.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    created REAL NOT NULL
)
"""


class ResponseCache:
    """Stores raw response bodies by request key. Safe to share between runs of one process.

    Example:
        >>> cache = ResponseCache(":memory:")
        >>> key = cache.key("http://x/v1", b'{"model":"m"}', 0)
        >>> cache.put(key, b'{"choices":[]}')
        >>> cache.get(key)
        b'{"choices":[]}'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(base_url: str, body: bytes, sample_index: int) -> str:
        h = hashlib.sha256()
        h.update(base_url.encode())
        h.update(b"\0")
        h.update(body)
        h.update(b"\0%d" % sample_index)
        return h.hexdigest()

    def get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(row[0])

    def put(self, key: str, body: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, body, created) VALUES (?, ?, ?)",
            (key, body, time.time()),
        )

    def close(self) -> None:
        self._db.close()
