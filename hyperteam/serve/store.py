"""Opening a run store from a URL: SQLite for one process, PostgreSQL for several replicas."""

from __future__ import annotations

import re

from hyperteam.errors import ConfigError
from hyperteam.serve.records import RunStore

_MEMORY = ("", ":memory:", "/:memory:")


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def open_store(url: str | None) -> RunStore:
    """Opens the run store that ``url`` names.

    ============================================  ===========================================
    ``url``                                       store
    ============================================  ===========================================
    ``runs.sqlite``, ``/var/lib/ht/runs.sqlite``  SQLite file (a plain path; folder created)
    ``sqlite:///var/lib/ht/runs.sqlite``          SQLite file ``/var/lib/ht/runs.sqlite``
    ``sqlite://runs.sqlite``                      SQLite file ``runs.sqlite`` (relative)
    ``:memory:``, ``sqlite://:memory:``           SQLite in memory (tests)
    ``postgresql://user:pw@host:5432/db``         PostgreSQL (``postgres://`` too)
    ============================================  ===========================================

    A SQLite store is opened here; a PostgreSQL store connects (and creates its
    tables) on ``await store.open()`` or on its first call.

    Args:
        url: the store's URL or file path. There is no default: the caller passes its own.

    Returns:
        A :class:`~hyperteam.serve.records.RunStore`.

    Raises:
        ConfigError: ``url`` is missing or of an unknown scheme, the SQLite file
            cannot be used, or PostgreSQL is asked for without psycopg installed.

    Example:
        >>> store = open_store(":memory:")
        >>> type(store).__name__
        'SQLiteRunStore'
    """
    if url is None or not url.strip():
        raise ConfigError("no run store given: pass a SQLite file path or a postgresql:// URL")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme == "sqlite":
        from hyperteam.serve._sqlite_store import SQLiteRunStore

        path = rest if sep else url
        return SQLiteRunStore(":memory:" if path in _MEMORY else path)
    if scheme in ("postgresql", "postgres"):
        try:
            from hyperteam.serve._postgres_store import PostgresRunStore
        except ImportError as exc:
            raise ConfigError(
                f"the run store {scheme}://... needs psycopg ({exc}): pip install 'hyperteam[postgres]'"
            ) from None
        return PostgresRunStore(url)
    raise ConfigError(
        f"unknown run store URL {_redact(url)!r}: use a SQLite file path, sqlite:///path, or postgresql://user@host/db"
    )
