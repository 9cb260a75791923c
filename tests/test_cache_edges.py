"""The response cache as a user meets it: where it lives on disk, what it counts, what it keeps apart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hyperteam.models.cache import ResponseCache


def test_a_cache_in_a_folder_that_does_not_exist_yet_is_created_there_and_survives_a_reopen(tmp_path: Path):
    path = tmp_path / "runs" / "today" / "cache.sqlite"
    cache = ResponseCache(path)
    key = cache.key("http://x/v1", b'{"model":"m"}', 0)
    cache.put(key, b"body-1")
    cache.close()
    assert path.is_file()
    again = ResponseCache(path)
    assert again.get(key) == b"body-1"
    # WAL: a run killed mid-write leaves the earlier replies readable.
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_hits_and_misses_are_counted_one_per_lookup():
    cache = ResponseCache(":memory:")
    assert (cache.hits, cache.misses) == (0, 0)
    key = cache.key("http://x/v1", b"{}", 0)
    assert cache.get(key) is None and cache.get(key) is None
    cache.put(key, b"a")
    assert cache.get(key) == b"a" and cache.get(key) == b"a" and cache.get(key) == b"a"
    assert (cache.hits, cache.misses) == (3, 2)


def test_a_newer_reply_replaces_the_cached_one():
    cache = ResponseCache(":memory:")
    key = cache.key("http://x/v1", b"{}", 0)
    cache.put(key, b"old")
    cache.put(key, b"new")
    assert cache.get(key) == b"new"


def test_keys_keep_endpoints_bodies_and_samples_apart():
    key = ResponseCache.key
    assert key("http://a/v1", b"{}", 0) != key("http://b/v1", b"{}", 0)
    assert key("http://a/v1", b"{}", 0) != key("http://a/v1", b"{}", 1)
    # The parts are separated: moving bytes from the URL to the body is another request.
    assert key("http://a/v1x", b"{}", 0) != key("http://a/v1", b"x{}", 0)
    assert key("http://a/v1", b"{}1", 0) != key("http://a/v1", b"{}", 10)
    assert key("http://a/v1", b"{}", 0) == key("http://a/v1", b"{}", 0)


async def test_the_cache_can_be_used_from_worker_threads(tmp_path: Path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    key = cache.key("http://x/v1", b"{}", 0)
    await asyncio.to_thread(cache.put, key, b"from a thread")
    assert await asyncio.to_thread(cache.get, key) == b"from a thread"
    cache.close()


def test_a_memory_cache_leaves_no_file(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = ResponseCache(":memory:")
    cache.put(cache.key("u", b"b", 0), b"x")
    assert list(tmp_path.iterdir()) == [] and cache.path == ":memory:"
    assert isinstance(cache._db, sqlite3.Connection)
