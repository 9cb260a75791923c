"""`hyperteam train` end to end on the SIMULATED model: train, eval the result, kill and resume, budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--team", "ann-gsm8k", "--suite", "gsm8k", "--model", "sim:0.7", "--train", "40", "--val", "40"]


def train(tmp: Path, *extra: str) -> int:
    return main(["train", *ARGS, "--out", str(tmp / "trained.json"), *extra])


def test_train_writes_the_team_and_report_and_eval_runs_the_trained_team(data_dir, tmp_path, capsys):
    assert train(tmp_path, "--epochs", "2") == 0
    out = capsys.readouterr().out
    estimate = out.index("cost estimate per epoch: 5 steps")
    assert "SIMULATED" in out and estimate < out.index("step 0: validation")
    report = json.loads((tmp_path / "train_report.json").read_text())
    assert report["simulated"] is True and report["stopped"] == "done" and report["steps_run"] == 10
    assert [c["step"] for c in report["curve"]] == list(range(11))
    assert report["tokens"]["team"]["total_tokens"] > report["tokens"]["optimizer"]["total_tokens"] > 0
    assert "SIMULATED MODEL" in (tmp_path / "train_report.html").read_text()
    team = ht.load_team(tmp_path / "trained.json")
    assert len(team.history) == report["steps_accepted"] >= 1
    assert team.history[-1]["val"] == report["final_val"] > report["initial_val"]
    pool = ht.optim.LayerPool.load(tmp_path / "trained.pool.json")
    grown = ht.optim.assemble(pool, list(pool.variants), name="grown")
    assert {layer.name for layer in grown.layers} == set(pool.variants) and len(pool) >= 1

    run = tmp_path / "eval"
    args = ["eval", "gsm8k", "--team", str(tmp_path / "trained.json"), "--limit", "50", "--model", "sim:0.7"]
    assert main([*args, "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "report.json").read_text())["n"] == 50


def test_a_killed_training_resumes_from_its_last_checkpoint_and_ends_as_an_unbroken_run(data_dir, tmp_path, capsys):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert train(whole, "--epochs", "2", "--batch", "4") == 0
    capsys.readouterr()

    checkpoint = broken / "trained.json.ckpt.json"
    cmd = [sys.executable, "-m", "hyperteam.cli", "train", *ARGS, "--epochs", "2", "--batch", "4"]
    env = {**os.environ, "HYPERTEAM_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([*cmd, "--out", str(broken / "trained.json")], env=env, stdout=subprocess.DEVNULL)
    killed_after = None
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            step = json.loads(checkpoint.read_text())["position"]["step"]
        except (OSError, ValueError):
            step = 0
        if step >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_after = step
            break
        time.sleep(0.005)
    assert killed_after is not None, "the run ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (broken / "train_report.json").exists()

    assert train(broken, "--epochs", "2", "--batch", "4") == 0
    assert f"resuming from checkpoint {checkpoint}" in capsys.readouterr().out
    resumed = json.loads((broken / "train_report.json").read_text())
    unbroken = json.loads((whole / "train_report.json").read_text())
    assert resumed["resumed_from_step"] >= killed_after
    assert resumed["curve"] == unbroken["curve"] and resumed["tokens"]["total"] == unbroken["tokens"]["total"]
    assert ht.load_team(broken / "trained.json").state_dict() == ht.load_team(whole / "trained.json").state_dict()


def test_a_token_budget_stops_training_cleanly(data_dir, tmp_path, capsys):
    assert train(tmp_path, "--epochs", "2", "--budget-tokens", "80000") == 0
    report = json.loads((tmp_path / "train_report.json").read_text())
    assert report["stopped"].startswith("token budget spent")
    assert 1 <= report["steps_run"] < 10
    assert ht.load_team(tmp_path / "trained.json").name == "ann-gsm8k"


def test_train_scores_self_consistency_at_the_trained_teams_tokens(data_dir, tmp_path, capsys):
    assert train(tmp_path, "--budget-tokens", "1", "--test", "30", "--baseline", "self-consistency") == 0
    out = capsys.readouterr().out
    sc = json.loads((tmp_path / "train_report.json").read_text())["test"]["self_consistency"]
    assert sc["samples"] > 1 and sc["equal_tokens"] is True  # ann-gsm8k's four calls buy several samples
    assert f"test: self-consistency x{sc['samples']} {sc['accuracy']:.3f} at " in out
    assert "SIMULATED" in (tmp_path / "train_report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baseline", "self-consistency", "--test", "0"], "give some (--test N)"),
        (["--train", "0"], "--train must be >= 1"),
        (["--out", "trained.txt"], "--out must be a .json, .yaml or .yml file"),
        (["--team", "hypergraph-gsm8k"], "textual backprop trains layered teams"),
        (["--test", "-1"], "--test must be >= 0"),
        (["--ops", "set_role,rename"], "--ops: unknown operation 'rename'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data_dir, tmp_path, capsys, extra, message):
    args = ["train", *ARGS, "--out", str(tmp_path / "t.json"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
