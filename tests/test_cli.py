"""The `hyperteam` command as a user runs it: answers, tokens, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, needs_data


def _first_test_question() -> str:
    if DATA_DIR is None:
        return "What is 2 + 3?"
    with open(DATA_DIR / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        return json.loads(f.readline())["question"]  # Janet's ducks; the gold answer is 18


QUESTION = _first_test_question()


def hyperteam(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERTEAM_")}
    if DATA_DIR is not None:
        full_env["HYPERTEAM_DATA_DIR"] = str(DATA_DIR)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hyperteam.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@needs_data
def test_run_prints_answer_tokens_and_calls():
    proc = hyperteam("run", "--team", "ann-gsm8k", "--model", "sim:1.0", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "answer: 18 (SIMULATED)" in out
    assert "calls: 4" in out
    tokens = int(out.split("tokens: ")[1].split()[0])
    assert tokens > 100


@needs_data
def test_run_through_the_sim_server(tmp_path: Path, data_dir: Path):
    from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess

    log = tmp_path / "requests.jsonl"
    server, url = start_sim_subprocess("--latency-ms", "5,0", "--request-log", str(log))
    try:
        proc = hyperteam("run", "--team", "ann-gsm8k", "--model", f"{url}#sim-1.0", "--json", QUESTION)
    finally:
        stop_sim_subprocess(server)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"] == "18" and result["usage"]["calls"] == 4
    assert len(log.read_text().splitlines()) == 4  # the calls reached the server


def test_no_model_uses_the_simulator_and_says_so():
    proc = hyperteam("run", "--team", "single", "What is 2 + 3?")
    assert proc.returncode == 0, proc.stderr
    assert "SIMULATED" in proc.stderr and "answer:" in proc.stdout


def test_a_malformed_team_file_names_the_field(tmp_path: Path):
    team = tmp_path / "team.yaml"
    team.write_text("layers:\n  - name: solve\n    agents:\n      - name: a\n        max_tokens: -5\n")
    proc = hyperteam("run", "--team", str(team), "--model", "sim:0.8", "q?")
    assert_one_line_error(proc, str(team), "layers[0].agents[0].max_tokens")


def test_an_unknown_model_spec_is_a_clear_error():
    proc = hyperteam("run", "--team", "single", "--model", "gpt-5", "q?")
    assert_one_line_error(proc, "unknown model spec 'gpt-5'")


def test_an_unreachable_endpoint_fails_after_bounded_retries():
    proc = hyperteam("run", "--team", "single", "--model", "http://127.0.0.1:9/v1#m", "q?")
    assert_one_line_error(proc, "cannot reach http://127.0.0.1:9/v1 after 4 attempts")


def test_usage_errors_exit_2_without_a_traceback():
    assert_one_line_error(hyperteam("run", "q?"), "--team")
    assert_one_line_error(hyperteam("bench", "nope"), "unknown benchmark 'nope'")
    assert_one_line_error(hyperteam("sim", "--accuracy", "1.5"))


@pytest.mark.parametrize("verb", ["run", "sim", "bench", "show"])
def test_every_verb_has_help(verb: str):
    proc = hyperteam(verb, "--help")
    assert proc.returncode == 0 and "usage: hyperteam" in proc.stdout
