"""The run store: the same tests on SQLite and on a real PostgreSQL server.

PostgreSQL comes from ``HYPERTEAM_TEST_POSTGRES_URL`` (CI starts one), or else
this module starts a throwaway server from the machine's binaries (initdb into
a temporary folder, as the ``postgres`` user when running as root). Each test
gets a schema of its own.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from hyperteam.errors import ConfigError
from hyperteam.serve.records import RunRecord
from hyperteam.serve.store import open_store

Opener = Callable[[], Awaitable]


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server's URL: CI's, or a throwaway server's for this session."""
    if url := os.environ.get("HYPERTEAM_TEST_POSTGRES_URL"):
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found: apt-get install postgresql, or set HYPERTEAM_TEST_POSTGRES_URL")
    root = Path(tempfile.mkdtemp(prefix="hyperteam-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root.
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def pg(*args: object) -> None:
        done = subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            pytest.fail(f"{args[0]} failed: {done.stderr}{done.stdout}{log}")

    try:
        pg(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        options = f"-k {root} -p {port} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        pg(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o", options, "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "runs.sqlite")
        return
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'hyperteam[postgres]'")
    base = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def opener(store_url: str) -> AsyncIterator[Opener]:
    """Opens a store on the test's database; call it twice for two replicas."""
    stores = []

    async def open_one():
        store = open_store(store_url)
        await store.open()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


def _run(run_id: str = "run_1", *, owner: str = "owner-a", key: str | None = None, **fields) -> RunRecord:
    fields.setdefault("input", {"input": "2+2?"})
    return RunRecord(id=run_id, team="ann-gsm8k", owner=owner, idempotency_key=key, **fields)


async def test_create_and_get_round_trip_every_field(opener: Opener) -> None:
    store = await opener()
    record = RunRecord(
        id="run_abc",
        team="moa",
        owner="sha256:1f2e",
        input={"messages": [{"role": "user", "content": "Janet’s ducks — 16 eggs?"}], "n": 3},
        status="running",
        result={"answer": "18", "text": "... #### 18", "usage": {"prompt_tokens": 12}},
        error={"kind": "timeout", "message": "deadline"},
        idempotency_key="key-1",
        created_at=1700000000.125,
        updated_at=1700000001.5,
        usage={"prompt_tokens": 120, "completion_tokens": 45, "calls": 3, "latency_s": 1.25},
    )
    assert await store.create_run(record) == (record, True)
    assert await store.get_run("run_abc") == record
    assert await store.get_run("run_missing") is None


async def test_create_sets_timestamps_and_rejects_a_reused_id(opener: Opener) -> None:
    store = await opener()
    before = time.time()
    run, created = await store.create_run(_run())
    assert created and before <= run.created_at == run.updated_at <= time.time()
    assert (await store.get_run("run_1")).created_at == run.created_at
    with pytest.raises(ValueError, match="run_1"):
        await store.create_run(_run(owner="owner-b"))


async def test_concurrent_creates_with_one_idempotency_key_make_one_run(opener: Opener) -> None:
    replicas = [await opener(), await opener()]
    results = await asyncio.gather(
        *(replicas[i % 2].create_run(_run(f"run_{i}", key="same", input={"i": i})) for i in range(10))
    )
    assert sum(created for _, created in results) == 1
    winner = next(run for run, created in results if created)
    assert {run.id for run, _ in results} == {winner.id}
    assert all(run == winner for run, _ in results)
    assert [await replicas[0].get_run(f"run_{i}") is None for i in range(10)].count(False) == 1


async def test_the_same_key_of_another_owner_is_another_run(opener: Opener) -> None:
    store = await opener()
    first, _ = await store.create_run(_run("run_1", owner="alice", key="k"))
    other, created = await store.create_run(_run("run_2", owner="bob", key="k"))
    assert created and other.id == "run_2" and other.owner == "bob"
    again, created = await store.create_run(_run("run_3", owner="alice", key="k"))
    assert not created and again == first
    # Without a key every create is a new run.
    assert (await store.create_run(_run("run_4", owner="alice")))[1]
    assert (await store.create_run(_run("run_5", owner="alice")))[1]


async def test_update_run_sets_status_result_error_and_usage(opener: Opener) -> None:
    store = await opener()
    await store.create_run(_run(created_at=1.0))
    await store.update_run("run_1", status="running", usage={"calls": 1})
    got = await store.get_run("run_1")
    assert (got.status, got.usage, got.result, got.error) == ("running", {"calls": 1}, None, None)
    assert got.updated_at > got.created_at == 1.0
    await store.update_run("run_1", status="succeeded", result={"answer": "4"}, usage={"calls": 3, "tokens": 90})
    await store.update_run("run_1", status="succeeded")  # None keeps what is stored
    got = await store.get_run("run_1")
    assert (got.status, got.result, got.usage) == ("succeeded", {"answer": "4"}, {"calls": 3, "tokens": 90})
    await store.update_run("run_1", status="failed", error={"kind": "http_500", "message": "boom"})
    assert (await store.get_run("run_1")).error == {"kind": "http_500", "message": "boom"}
    with pytest.raises(KeyError):
        await store.update_run("run_missing", status="cancelled")


async def test_concurrent_events_get_consecutive_seqs_in_order(opener: Opener) -> None:
    replicas = [await opener(), await opener()]
    await replicas[0].create_run(_run("run_1"))
    await replicas[0].create_run(_run("run_2"))
    seqs = await asyncio.gather(
        *(replicas[i % 2].append_event("run_1", {"type": "agent", "i": i, "text": "ü" * i}) for i in range(40))
    )
    assert sorted(seqs) == list(range(1, 41))
    events = await replicas[1].events("run_1")
    assert [seq for seq, _ in events] == list(range(1, 41))
    assert sorted(event["i"] for _, event in events) == list(range(40))
    assert {seq: event["i"] for seq, event in events} == {seq: i for i, seq in enumerate(seqs)}
    assert await replicas[0].events("run_1", after=35) == events[35:]
    assert await replicas[0].events("run_1", after=40) == []
    assert await replicas[0].append_event("run_2", {"type": "status"}) == 1
    assert await replicas[0].events("run_2") == [(1, {"type": "status"})]
    assert await replicas[0].events("run_missing") == []
    with pytest.raises(KeyError):
        await replicas[0].append_event("run_missing", {"type": "agent"})


async def test_interrupt_unfinished_marks_queued_and_running_only(opener: Opener) -> None:
    store = await opener()
    statuses = ["queued", "running", "succeeded", "failed", "cancelled", "interrupted", "running"]
    for i, status in enumerate(statuses):
        await store.create_run(_run(f"run_{i}", status=status))
    assert await store.interrupt_unfinished() == ["run_0", "run_1", "run_6"]
    after = [(await store.get_run(f"run_{i}")).status for i in range(len(statuses))]
    assert after == ["interrupted", "interrupted", "succeeded", "failed", "cancelled", "interrupted", "interrupted"]
    assert await store.interrupt_unfinished() == []


async def test_runs_and_events_survive_close_and_reopen(opener: Opener) -> None:
    store = await opener()
    await store.create_run(_run(key="k"))
    await store.update_run("run_1", status="succeeded", result={"answer": "4"})
    await store.append_event("run_1", {"type": "agent", "text": "4"})
    await store.close()
    store = await opener()
    assert (await store.get_run("run_1")).result == {"answer": "4"}
    assert await store.events("run_1") == [(1, {"type": "agent", "text": "4"})]
    assert await store.append_event("run_1", {"type": "done"}) == 2
    assert (await store.create_run(_run("run_2", key="k")))[0].id == "run_1"


async def test_a_second_store_sees_the_first_ones_runs(opener: Opener) -> None:
    first, second = await opener(), await opener()
    await first.create_run(_run())
    assert (await second.get_run("run_1")).status == "queued"
    await second.update_run("run_1", status="cancelled")
    assert (await first.get_run("run_1")).status == "cancelled"


def test_open_store_urls(tmp_path: Path) -> None:
    for url, path in [
        (str(tmp_path / "a" / "plain.sqlite"), tmp_path / "a" / "plain.sqlite"),
        (f"sqlite://{tmp_path}/b/abs.sqlite", tmp_path / "b" / "abs.sqlite"),
    ]:
        store = open_store(url)
        assert type(store).__name__ == "SQLiteRunStore" and path.is_file()
    for url in (":memory:", "sqlite://:memory:", "sqlite:///:memory:"):
        assert open_store(url).path == ":memory:"
    assert type(open_store("postgresql://u@localhost:1/db")).__name__ == "PostgresRunStore"
    with pytest.raises(ConfigError, match="no run store given"):
        open_store(None)
    with pytest.raises(ConfigError, match=r"unknown run store URL 'mysql://root:\*\*\*@db/x'"):
        open_store("mysql://root:secret@db/x")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=r"junk\.sqlite"):
        open_store(str(tmp_path / "junk.sqlite"))


def test_postgres_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "hyperteam.serve._postgres_store", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'hyperteam\[postgres\]'"):
        open_store("postgres://u@localhost/db")


async def test_unreachable_postgres_is_a_config_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    store = open_store(f"postgresql://u:hunter2@127.0.0.1:{_free_port()}/db")
    with pytest.raises(ConfigError, match=r"cannot open the run store postgresql://u:\*\*\*@127") as err:
        await store.open()
    assert "hunter2" not in str(err.value)
    await store.close()


async def test_a_batch_write_creates_appends_in_order_then_updates(opener: Opener) -> None:
    store = await opener()
    await store.create_run(_run("run_2"))
    await store.append_event("run_2", {"type": "status"})
    events = [("run_1", {"i": 0}), ("run_2", {"i": 1}), ("run_gone", {"i": 2}), ("run_1", {"i": 3})]
    updates = [("run_1", {"status": "succeeded", "result": {"answer": "5"}}), ("run_gone", {"status": "failed"})]
    assert await store.write(creates=[_run("run_1")], events=events, updates=updates) == [1, 2, None, 2]
    assert await store.events("run_1") == [(1, {"i": 0}), (2, {"i": 3})]
    assert await store.events("run_2") == [(1, {"type": "status"}), (2, {"i": 1})]
    assert await store.events("run_gone") == []
    run = await store.get_run("run_1")
    assert (run.status, run.result) == ("succeeded", {"answer": "5"})
    with pytest.raises(ValueError, match="run_1"):
        await store.write(creates=[_run("run_1")], events=[("run_2", {"i": 9})])
    assert [seq for seq, _ in await store.events("run_2")] == [1, 2]  # the failed batch wrote nothing
