"""The result store on disk: where it is created, what a row keeps, what the file holds, and a bad file."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import Progress, evaluate
from hyperteam.evals.store import ResultRow, ResultStore
from hyperteam.testing import FunctionModel


def _row(problem_id: str = "p1", *, finished_at: float = 0.0, trace: list | None = None) -> ResultRow:
    return ResultRow(
        problem_id=problem_id, idx=0, question="2 + 3?", gold="5", prediction="#### 5", answer_strict="5",
        answer_flexible="5", correct_strict=True, correct_flexible=False, prompt_tokens=10, completion_tokens=5,
        calls=1, latency_s=0.1, trace=trace or [], finished_at=finished_at,
    )  # fmt: skip


def test_a_store_in_a_new_folder_is_created_and_is_a_wal_database(tmp_path: Path):
    path = tmp_path / "runs" / "gsm8k" / "r.sqlite"
    store = ResultStore(path)
    store.add(_row())
    store.close()
    assert path.is_file()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT problem_id, correct_strict, correct_flexible FROM results").fetchall() == [
            ("p1", 1, 0)
        ]


def test_a_memory_store_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    store = ResultStore(":memory:")
    store.add(_row())
    assert len(store) == 1 and store.done_ids() == {"p1"} and list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_is_a_config_error_naming_it(tmp_path: Path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a result store\n" * 100)
    with pytest.raises(ConfigError, match=rf"^cannot use {path} as a result store: file is not a database$"):
        ResultStore(path)


def test_the_finish_time_is_stamped_unless_the_row_has_one():
    store = ResultStore(":memory:")
    before = time.time()
    store.add(_row("new"))
    store.add(_row("old", finished_at=123.0))
    times = {r.problem_id: r.finished_at for r in store.rows()}
    assert before <= times["new"] <= time.time() and times["old"] == 123.0


def test_traces_and_meta_are_stored_as_readable_utf8(tmp_path: Path):
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    store.add(_row(trace=[{"agent": "résumé", "output": "3 × 4 = 12"}]))
    store.set_meta(team="équipe", suite="gsm8k")
    store.set_meta(suite="maths")  # a later value replaces the earlier one
    assert store.rows()[0].trace == [{"agent": "résumé", "output": "3 × 4 = 12"}]
    assert store.meta() == {"team": "équipe", "suite": "maths"}
    store.close()
    with sqlite3.connect(path) as db:
        assert "résumé" in db.execute("SELECT trace FROM results").fetchone()[0]
        assert db.execute("SELECT value FROM meta WHERE key = 'team'").fetchone()[0] == '"équipe"'


async def test_a_store_is_usable_from_worker_threads(tmp_path: Path):
    store = ResultStore(tmp_path / "r.sqlite")
    assert await asyncio.to_thread(store.add, _row()) is True
    assert await asyncio.to_thread(store.done_ids) == {"p1"}
    store.close()


def test_progress_reports_a_rate_from_the_start_of_the_run():
    rates: list[float] = []

    def progress(p: Progress) -> None:
        rates.append(p.rate)

    model = FunctionModel(lambda request: "#### 5")
    asyncio.run(evaluate(ht.load_team("single"), [Problem("p1", "q", "5")], model=model, progress=progress))
    assert len(rates) == 1 and rates[0] > 1.0  # one instant problem: many per second, not one per uptime


def test_an_unexpected_failure_is_logged_with_its_problem_and_an_expected_one_is_not(caplog: pytest.LogCaptureFixture):
    def reply(request: ht.ChatRequest) -> str:
        if "bug" in request.messages[-1]["content"]:
            raise KeyError("oops")
        raise ht.errors.ModelError("down", kind="http_500")

    problems = [Problem("p-bug", "bug", "5"), Problem("p-down", "down", "5")]
    with caplog.at_level(logging.ERROR, logger="hyperteam.evals.runner"):
        asyncio.run(evaluate(ht.load_team("single"), problems, model=FunctionModel(reply)))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "hyperteam.evals.runner"]
    assert [r.getMessage() for r in errors] == ["problem p-bug failed unexpectedly"]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is KeyError
