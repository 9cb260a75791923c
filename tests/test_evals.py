"""Eval runs: rows in the store, errors as results, resume after kill -9, the CLI's run folder."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.evals.runner import evaluate
from hyperteam.evals.store import ResultStore
from hyperteam.testing import FunctionModel
from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess
from tests.conftest import needs_data


def _demo(limit: int | None = None) -> list[ht.datasets.Problem]:
    return ht.datasets.load("demo", limit=limit)


def test_every_problem_gets_one_row_with_answers_tokens_and_trace(tmp_path: Path):
    problems = _demo()
    team = ht.load_team("ann-gsm8k")
    store = tmp_path / "run.sqlite"
    report = asyncio.run(evaluate(team, problems, store=store, model="sim:1.0", suite="demo", concurrency=8))
    rows = ResultStore(store).rows()
    assert [r.problem_id for r in rows] == [p.id for p in problems]
    assert all(r.correct_strict and r.answer_strict == r.gold for r in rows)  # sim:1.0 knows the demo suite
    assert all(r.calls == 4 and r.prompt_tokens > 0 and len(r.trace) == 6 for r in rows)
    assert report["n"] == 30 and report["accuracy"]["strict"] == 1.0 and report["simulated"] is True
    with sqlite3.connect(store) as db:  # the documented table, readable without hyperteam
        assert db.execute("SELECT COUNT(DISTINCT problem_id) FROM results").fetchone()[0] == 30


def test_failed_problems_are_results_and_the_run_goes_on(tmp_path: Path):
    def reply(request: ht.ChatRequest) -> str:
        if "muffins" in request.messages[-1]["content"]:
            raise ModelError("call failed at http://x/v1 after 4 attempts: http_503: busy", kind="http_503")
        return "#### 7"

    team = ht.load_team("single")
    report = asyncio.run(
        evaluate(team, _demo(5), store=tmp_path / "r.sqlite", model=FunctionModel(reply), suite="demo")
    )
    rows = ResultStore(tmp_path / "r.sqlite").rows()
    failed = [r for r in rows if r.error_kind]
    assert len(rows) == 5 and [r.error_kind for r in failed] == ["http_503"]
    assert "busy" in failed[0].error and not failed[0].correct_strict
    assert report["errors"] == 1 and report["errors_by_kind"] == {"http_503": 1}


def test_a_store_is_resumed_only_on_purpose(tmp_path: Path):
    team, store = ht.load_team("single"), tmp_path / "r.sqlite"
    asyncio.run(evaluate(team, _demo(3), store=store, model="sim:0.9", suite="demo"))
    with pytest.raises(ht.ConfigError, match="already holds 3 results"):
        asyncio.run(evaluate(team, _demo(5), store=store, model="sim:0.9", suite="demo"))
    with pytest.raises(ht.ConfigError, match="holds a run of team 'single' on 'demo'"):
        asyncio.run(evaluate(ht.load_team("moa"), _demo(5), store=store, resume=True, suite="demo"))
    model = FunctionModel(lambda r: "#### 1")
    asyncio.run(evaluate(team, _demo(5), store=store, model=model, resume=True, suite="demo"))
    assert len(model.requests) == 2 and len(ResultStore(store)) == 5  # only the missing two ran


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperteam.cli", *args], **kw)


def _wait_for_rows(store: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the run has stored its first result (the CLI's start-up takes a while)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            try:
                with sqlite3.connect(store) as db:
                    if db.execute("SELECT COUNT(*) FROM results").fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass  # created but not yet set up

        time.sleep(0.05)
    raise AssertionError("the eval stored nothing")


@needs_data
def test_killed_runs_resume_without_losing_or_repeating_anything(tmp_path: Path, data_dir: Path):
    log = tmp_path / "requests.jsonl"
    server, url = start_sim_subprocess(
        "--latency-ms", "20,0.5", "--request-log", str(log), "--log-messages", "--max-concurrency", "64"
    )
    rng = random.Random(11)
    questions = {p.question: p.id for p in ht.datasets.load("gsm8k", limit=300)}
    try:
        for attempt in range(5):
            out = tmp_path / f"run{attempt}"
            args = ["eval", "gsm8k", "--limit", "300", "--team", "ann-gsm8k", "--model", f"{url}#sim-0.8"]
            args += ["--concurrency", "32", "--out", str(out), "--no-progress"]
            proc = _cli(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _wait_for_rows(out / "results.sqlite", proc)
            time.sleep(rng.uniform(0.0, 1.0))  # a random moment of the run
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            with sqlite3.connect(out / "results.sqlite") as db:
                finished = {r[0] for r in db.execute("SELECT problem_id FROM results")}
            assert 0 < len(finished) < 300, f"attempt {attempt}: kill landed at {len(finished)} rows"
            resumed_at = time.time()
            done = _cli(*args, "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, stderr = done.communicate(timeout=120)
            assert done.returncode == 0, stderr
            with sqlite3.connect(out / "results.sqlite") as db:
                ids = [r[0] for r in db.execute("SELECT problem_id FROM results")]
            assert len(ids) == 300 == len(set(ids))
            time.sleep(0.3)  # the request log is flushed every 100 ms
            entries = [json.loads(line) for line in log.read_text().splitlines()]
            # Agents' prompts read "Problem:\n<question>\n\n...": which problem a call was for.
            sent = [e["messages"][-1]["content"].split("\n")[1] for e in entries if e["t"] >= resumed_at]
            again = {questions[q] for q in sent}
            assert not again & finished, f"attempt {attempt}: finished problems were sent again"
    finally:
        stop_sim_subprocess(server)


def test_the_cli_writes_a_run_folder(tmp_path: Path):
    out = tmp_path / "run"
    proc = _cli("eval", "demo", "--team", "single", "--model", "sim:0.7", "--out", str(out), "--no-progress",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    report = json.loads((out / "report.json").read_text())
    for key in ("suite", "team", "n", "accuracy", "ci95", "tokens", "calls", "errors", "wall_s", "simulated"):
        assert key in report
    assert report["n"] == 30 and report["simulated"] is True and report["suite"] == "demo"
    assert "SIMULATED" in stdout and (out / "report.html").stat().st_size > 10_000
    again = _cli("eval", "demo", "--out", str(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2 and "--resume" in err and "Traceback" not in err


def test_eval_input_errors_are_one_line(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "What is 2 + 2?", "a": 4}\n{"q": broken\n')
    cases = [
        (["eval", "nosuch"], "unknown suite 'nosuch'"),
        (["eval", "mine", "--data", str(bad), "--question-field", "q", "--answer-field", "a"], "bad.jsonl:2"),
        (["eval", "demo", "--resume"], "--resume needs --out"),
        (["eval", "demo", "--limit", "0"], "--limit must be >= 1"),
    ]
    for args, message in cases:
        proc = _cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and message in err and "Traceback" not in err, (args, err)
