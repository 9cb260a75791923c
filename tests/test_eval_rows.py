"""What an eval writes and scores per problem: the first row of a problem stays, strict and flexible differ."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import hyperteam as ht
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import evaluate
from hyperteam.evals.store import ResultRow, ResultStore
from hyperteam.testing import FunctionModel


def _row(problem_id: str, prediction: str, *, correct: bool) -> ResultRow:
    return ResultRow(
        problem_id=problem_id, idx=0, question="2 + 3?", gold="5", prediction=prediction,
        answer_strict=prediction.removeprefix("#### "), answer_flexible=prediction.removeprefix("#### "),
        correct_strict=correct, correct_flexible=correct, prompt_tokens=10, completion_tokens=5, calls=1,
        latency_s=0.1, finished_at=1.0,
    )  # fmt: skip


def test_a_duplicate_row_is_refused_and_the_first_result_stays_on_disk(tmp_path: Path):
    path = tmp_path / "run.sqlite"
    store = ResultStore(path)
    assert store.add(_row("p1", "#### 5", correct=True)) is True
    # A second worker finishing the same problem (a retried Ray task) must not count it twice.
    assert store.add(_row("p1", "#### 6", correct=False)) is False
    assert len(store) == 1
    [row] = store.rows()
    assert row.prediction == "#### 5" and row.correct_strict is True
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT prediction, correct_strict FROM results").fetchall() == [("#### 5", 1)]


def test_strict_correctness_needs_the_strict_format(tmp_path: Path):
    # "18" is the last number (flexible) but there is no '#### N' or 'The answer is N' (strict).
    problems = [Problem("p1", "Janet sells 9 eggs at $2. How much?", "18")]
    model = FunctionModel(lambda request: "She sells 9 eggs at $2 each, so she makes 18")
    report = asyncio.run(evaluate(ht.load_team("single"), problems, store=tmp_path / "r.sqlite", model=model))
    [row] = ResultStore(tmp_path / "r.sqlite").rows()
    assert (row.answer_strict, row.answer_flexible) == (None, "18")
    assert (row.correct_strict, row.correct_flexible) == (False, True)
    assert report["accuracy"] == {"strict": 0.0, "flexible": 1.0}


def test_strict_and_flexible_answers_can_disagree(tmp_path: Path):
    # The strict answer says 18; a later number (a check) is what flexible extraction reads.
    problems = [Problem("p1", "Janet sells 9 eggs at $2. How much?", "18")]
    model = FunctionModel(lambda request: "9 * 2 = 18\nThe answer is 18. Check: 18 / 2 = 9")
    report = asyncio.run(evaluate(ht.load_team("single"), problems, model=model))
    assert report["accuracy"] == {"strict": 1.0, "flexible": 0.0}
