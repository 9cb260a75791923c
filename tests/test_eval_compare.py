"""Comparisons that answer the user's question: paired differences, McNemar's p, the equal-token baseline,
and ``hyperteam eval --data FILE`` without a made-up suite name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hyperteam.evals.baseline import matched_samples, pilot_costs
from hyperteam.evals.compare import compare, render_compare
from hyperteam.evals.store import ResultRow, ResultStore


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperteam.cli", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _run(folder: Path, team: str, correct: list[bool], *, prefix: str = "demo-test") -> Path:
    folder.mkdir(parents=True)
    store = ResultStore(folder / "results.sqlite")
    store.set_meta(suite="demo", team=team, model="sim:0.7", simulated=True)
    for i, ok in enumerate(correct):
        answer = "1" if ok else "2"
        store.add(ResultRow(f"{prefix}-{i:04d}", i, f"Question {prefix} {i}?", "1", f"#### {answer}", answer,
                            answer, ok, ok, 100, 50, 1, 0.1))  # fmt: skip
    store.close()
    return folder


def test_compare_prints_the_paired_difference_and_mcnemar_p(tmp_path: Path):
    # 40 problems: both right on 20, only A on 2, only B on 10, neither on 8.
    a = [True] * 20 + [True] * 2 + [False] * 10 + [False] * 8
    b = [True] * 20 + [False] * 2 + [True] * 10 + [False] * 8
    run_a, run_b = _run(tmp_path / "a", "ann", a), _run(tmp_path / "b", "sc", b)
    reports = compare([run_a, run_b])
    paired = reports[1]["paired"]
    assert (paired["n"], paired["both"], paired["only_a"], paired["only_b"]) == (40, 20, 2, 10)
    assert paired["diff"] == pytest.approx(0.2) and paired["against"] == str(run_a)
    assert paired["mcnemar_p"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # exact binomial tail, 0.0386
    assert 0 < paired["ci95"][0] < 0.2 < paired["ci95"][1]
    text = render_compare(reports)
    line = next(ln for ln in text.splitlines() if ln.startswith("paired:"))
    assert f"{run_b} - {run_a}: +20.0 points (95% CI +" in line
    assert "on 40 shared problems; McNemar exact p = 0.0386" in line
    assert "right only in " + str(run_b) + ": 10" in line and "only in " + str(run_a) + ": 2" in line
    # Through the command, with the JSON and HTML files.
    proc = _cli("eval", "compare", str(run_a), str(run_b), "--json", str(tmp_path / "c.json"), "--html",
                str(tmp_path / "c.html"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "McNemar exact p = 0.0386" in proc.stdout
    assert json.loads((tmp_path / "c.json").read_text())[1]["paired"]["only_b"] == 10
    assert "Paired differences (same problems)" in (tmp_path / "c.html").read_text()


def test_runs_on_different_problems_are_not_paired(tmp_path: Path):
    run_a = _run(tmp_path / "a", "ann", [True, False, True])
    run_b = _run(tmp_path / "b", "sc", [True, True, True], prefix="other")
    reports = compare([run_a, run_b])
    assert reports[1]["paired"] is None
    assert "no problems in common" in render_compare(reports)


def test_matched_samples_rounds_and_stays_in_bounds():
    assert matched_samples(930, 130, 160) == 5
    assert matched_samples(929, 130, 100) == 8  # 7.99 rounds to 8
    assert matched_samples(50, 130, 160) == 1  # never fewer than one sample
    assert matched_samples(1e6, 100, 10) == 32  # the agent's limit
    assert matched_samples(500, 100, 0) == 1
    # A server that answers one sample a request: each extra sample pays the prompt again.
    assert matched_samples(600, 100, 50, prompt_per_extra_sample=100) == 4  # 4 x (100 + 50) = 600
    assert matched_samples(600, 100, 50) == 10  # were the prompt shared


def test_the_pilot_tells_a_shared_prompt_from_one_request_a_sample():
    shared = {"calls": 10, "n": 10, "tokens": {"prompt": 1000, "completion": 1000}}  # n=2 honoured
    assert pilot_costs(shared) == (100.0, 50.0, 0.0)
    split = {"calls": 20, "n": 10, "tokens": {"prompt": 2000, "completion": 1000}}  # one sample a request
    assert pilot_costs(split) == (100.0, 50.0, 100.0)
    retried = {"calls": 25, "n": 10, "tokens": {"prompt": 2500, "completion": 1000}}  # never more than a prompt
    assert pilot_costs(retried) == (100.0, 50.0, 100.0)
    assert pilot_costs({"calls": 0, "n": 0, "tokens": {"prompt": 0, "completion": 0}}) == (0.0, 0.0, 0.0)


async def test_the_baseline_matches_the_teams_tokens_on_a_server_that_ignores_n(tmp_path: Path):
    from aiohttp import web

    from hyperteam.evals.baseline import run_baseline
    from hyperteam.evals.datasets import Problem
    from hyperteam.evals.report import write_report
    from hyperteam.evals.runner import evaluate
    from hyperteam.topologies import load_team
    from tests.aiohttp_loopback import aiohttp_server

    async def one_choice(request: web.Request) -> web.Response:  # as llama.cpp's server: one choice whatever n says
        await request.json()
        choice = {"index": 0, "message": {"role": "assistant", "content": "#### 42"}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
        return web.json_response({"id": "x", "object": "chat.completion", "model": "m", "choices": [choice],
                                  "usage": usage})  # fmt: skip

    problems = [Problem(id=f"p{i}", question=f"What is {i} + 42 - {i}?", answer="42") for i in range(4)]
    run = tmp_path / "run"
    async with aiohttp_server([("post", "/v1/chat/completions", one_choice)]) as url:
        team = await evaluate(load_team("ann-gsm8k"), problems, model=f"{url}#m", store=run / "results.sqlite")
        await run_baseline("self-consistency", problems, run_dir=run, model=f"{url}#m", suite="t")
    assert team["tokens"]["per_problem"] == 600  # four calls of 150
    base = write_report(run)["baseline"]
    assert base["samples"] == 4 and base["tokens"]["per_problem"] == 600  # not 10 samples at 1500 tokens
    assert (base["token_ratio"], base["equal_tokens"]) == (1.0, True)
    assert base["pilot_tokens"] == 4 * 2 * 150  # two samples a problem, each its own request


def test_eval_with_the_self_consistency_baseline_at_equal_tokens(tmp_path: Path):
    out = tmp_path / "run"
    proc = _cli("eval", "demo", "--team", "ann-gsm8k", "--model", "sim:0.7", "--out", str(out), "--no-progress",
                "--baseline", "self-consistency")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    base = report["baseline"]
    team_tokens = report["tokens"]["per_problem"]
    assert base["team"] == "self-consistency" and base["samples"] > 1 and base["n"] == 30
    assert base["matched_tokens"] == pytest.approx(team_tokens)
    # Equal cost: within one sample's tokens of the team's (the sample count is rounded).
    per_sample = base["tokens"]["completion"] / base["n"] / base["samples"]
    assert abs(base["tokens"]["per_problem"] - team_tokens) <= per_sample
    assert base["paired"]["n"] == 30 and 0 <= base["paired"]["mcnemar_p"] <= 1
    assert (out / "baseline" / "results.sqlite").is_file()
    assert f"self-consistency x{base['samples']} - ann-gsm8k:" in " ".join(proc.stdout.split())
    assert "baseline: self-consistency" in (out / "report.html").read_text()


def test_the_team_its_pilot_and_its_baseline_share_one_model_server(tmp_path: Path, monkeypatch):
    from hyperteam.cli import main
    from hyperteam.models import spec
    from hyperteam.testing.sim.model import SimModel

    started: list[str] = []

    def start_server(rest: str, runtime: object) -> SimModel:  # as llamacpp: and vllm: start one
        started.append(rest)
        return SimModel(0.7, name="sim:0.7")

    monkeypatch.setitem(spec._SERVER_SCHEMES, "boot", start_server)
    out = tmp_path / "run"
    argv = ["eval", "demo", "--team", "ann-gsm8k", "--model", "boot:m", "--limit", "4", "--out", str(out)]
    assert main([*argv, "--no-progress", "--baseline", "self-consistency"]) == 0
    assert started == ["m"]  # not one per evaluation (three)
    assert json.loads((out / "report.json").read_text())["baseline"]["n"] == 4


def test_eval_data_file_needs_no_suite_name(tmp_path: Path):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"q": f"What is {i} + {i}?", "a": 2 * i}) + "\n" for i in range(1, 6)))
    out = tmp_path / "run"
    proc = _cli("eval", "--data", str(data), "--question-field", "q", "--answer-field", "a", "--team", "single",
                "--model", "sim:0.7", "--out", str(out), "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["suite"] == "problems" and report["n"] == 5
    proc = _cli("eval", "--team", "single")
    assert proc.returncode == 2 and "--data FILE" in proc.stderr and "Traceback" not in proc.stderr
