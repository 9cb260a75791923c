"""`hyperteam bench learn` in a tiny configuration: the table, the JSON a reader checks, the data source named."""

from __future__ import annotations

import json

import pytest

from hyperteam.bench import learn
from hyperteam.cli import main
from hyperteam.evals import datasets


def test_tiny_learn_bench_writes_both_worlds_and_says_it_used_generated_problems(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    out = tmp_path / "learn.json"
    args = ["--seeds", "1", "--train", "16", "--val", "16", "--test", "40", "--epochs", "1", "--json", str(out)]
    assert main(["bench", "learn", *args]) == 0
    printed = capsys.readouterr().out
    assert "generated word problems (GSM8K not found)" in printed and "SIMULATED" in printed
    assert "plain (null control, prompts only)" in printed and "skills: mean recovered share" in printed
    results = json.loads(out.read_text())
    assert results["simulated"] is True
    for world in ("skills", "plain"):
        (seed,) = results["worlds"][world]["seeds"]
        assert {"untrained_test", "trained_test", "optimum_test", "final_val"} <= set(seed)
        assert 0.0 <= seed["untrained_test"] <= 1.0 and seed["failed_problems"] == 0
        # Self-consistency at the trained team's tokens, on the same test problems.
        assert seed["sc_samples"] > 1 and 0.8 <= seed["sc_token_ratio"] <= 1.25 and 0.0 <= seed["sc_test"] <= 1.0
    assert "self-consistency at the trained team's tokens" in printed
    skills = results["worlds"]["skills"]["seeds"][0]
    # the optimum is exact: the simulated optimal team scores what the world computes
    assert skills["optimum_test"] == pytest.approx(skills["optimum_exact"])
    assert skills["optimum_test"] > skills["untrained_test"]


def test_generated_problems_are_disjoint_across_train_val_and_test():
    train, val, test = learn._problems(30, 20, 50, seed=4)
    questions = [p.question for p in (*train, *val, *test)]
    assert len(set(questions)) == 100 and len({p.id for p in (*train, *val, *test)}) == 100


def test_bad_worlds_are_refused(capsys):
    assert main(["bench", "learn", "--worlds", "skills,moon"]) == 2
    assert "unknown world(s) moon" in capsys.readouterr().err
