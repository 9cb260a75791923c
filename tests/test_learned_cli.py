"""``hyperteam train --topology ...`` as a user runs it: the topology, a team spec using it, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, hyperteam

pytest.importorskip("torch")


def test_train_topology_writes_topology_spec_and_report(tmp_path: Path):
    out = tmp_path / "topo.json"
    proc = hyperteam(
        "train", "--topology", "hyperagent", "--team", "hyperagent-gsm8k", "--suite", "demo",
        "--train", "4", "--val", "2", "--epochs", "1", "--batch", "2", "--samples-per-query", "2",
        "--model", "sim:0.8", "--out", str(out), "--test", "3", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SIMULATED" in proc.stdout
    assert "step 2: utility" in proc.stdout
    for name in ("hyperagent (learned)", "hyperagent (untrained)", "complete", "chain"):
        assert name in proc.stdout
    assert "learned topologies on 3 test problems: 0 empty" in proc.stdout
    report = json.loads((tmp_path / "topo.report.json").read_text())
    assert report["simulated"] is True and report["learner"] == "hyperagent"
    assert [s["step"] for s in report["steps"]] == [1, 2]
    assert {"utility", "accuracy", "tokens_per_query", "hyperedges_per_query"} <= set(report["steps"][0])
    assert set(report["comparison"]) == {"hyperagent (learned)", "hyperagent (untrained)", "complete", "chain"}
    topologies = report["topologies"]
    assert topologies["problems"] == 3 and topologies["empty"] == 0 and topologies["alone_margin"] == 1.0
    assert all(row["hyperedges"] for row in topologies["per_problem"])
    for row in report["comparison"].values():
        assert row["n"] == 3 and 0 <= row["accuracy"] <= 1 and row["prompt_tokens_per_problem"] > 0
    assert "SIMULATED" in (tmp_path / "topo.report.html").read_text()
    # The written spec runs the learned topology.
    run = hyperteam("run", "--team", str(tmp_path / "topo.team.yaml"), "--model", "sim:1.0", "What is 2 + 3?")
    assert run.returncode == 0, run.stderr
    assert "calls: 15" in run.stdout


def test_train_topology_bad_input_is_one_line(tmp_path: Path):
    base = ["train", "--topology", "gdesigner", "--team", "complete", "--suite", "demo", "--model", "sim:0.8"]
    assert_one_line_error(hyperteam(*base, "--out", str(tmp_path / "t.yaml")), "--out must be a .json file")
    assert_one_line_error(
        hyperteam(*base, "--out", str(tmp_path / "t.json"), "--optimizer-model", "sim:0.9"), "--optimizer-model"
    )
    assert_one_line_error(
        hyperteam(*base, "--out", str(tmp_path / "t.json"), "--structured-output", "json_schema"),
        "--structured-output applies to textual backprop only",
    )
    assert_one_line_error(
        hyperteam(*base[:4], "single", *base[5:], "--out", str(tmp_path / "t.json")), "needs a hypergraph"
    )
    assert_one_line_error(
        hyperteam(*base, "--out", str(tmp_path / "t.json"), "--samples-per-query", "1"), "--samples-per-query"
    )


def test_show_draws_the_hypergraph_a_learned_team_makes_for_a_query():
    shown = hyperteam("show", "--team", "hyperagent-gsm8k", "--query", "Janet's ducks lay 16 eggs per day.")
    assert shown.returncode == 0, shown.stderr
    assert "hypergraph team" in shown.stdout and "e0 --- a0" in shown.stdout
    assert_one_line_error(hyperteam("show", "--team", "hyperagent-gsm8k"), "add --query")
    assert_one_line_error(hyperteam("show", "--team", "single", "--query", "x"), "learned-topology teams only")


def test_train_topology_also_trains_an_adaptive_fusion_into_the_spec(tmp_path: Path):
    team = tmp_path / "team.yaml"
    team.write_text(
        "name: ha\ntopology: {learner: hyperagent}\nagents: [{name: a}, {name: b}, {name: c}]\nrounds: 2\n"
        "fusion: adaptive\n",
        encoding="utf-8",
    )
    out = tmp_path / "t.json"
    proc = hyperteam(
        "train", "--topology", "hyperagent", "--team", str(team), "--suite", "demo", "--train", "4", "--val", "0",
        "--epochs", "1", "--batch", "2", "--samples-per-query", "2", "--model", "sim:0.8", "--out", str(out),
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "adaptive fusion trained online on 4 problems" in proc.stdout
    import yaml

    fusion = yaml.safe_load((tmp_path / "t.team.yaml").read_text())["fusion"]
    assert fusion["name"] == "adaptive" and set(fusion["weights"]) == {"a", "b", "c"}
    assert json.loads((tmp_path / "t.report.json").read_text())["adaptive_fusion"]["problems"] == 4
