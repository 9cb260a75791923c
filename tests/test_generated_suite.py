"""The ``generated`` suite (problems from templates, no data on disk) and HyperAgent's partners per agent (k)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperteam.errors import ConfigError
from hyperteam.evals import datasets
from hyperteam.testing.sim import SimBrain, SimModel
from hyperteam.testing.sim.worlds.topology import category
from tests.test_cli import assert_one_line_error, hyperteam


def test_generated_suite_has_disjoint_train_and_test_splits_without_data(tmp_path: Path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert datasets.splits("generated") == ("train", "test")
    assert datasets.is_available("generated", split="train", data_dir=empty)
    train = datasets.load("generated", split="train", data_dir=empty)
    test = datasets.load("generated", split="test", data_dir=empty)
    assert (len(train), len(test)) == (2000, 1000)
    assert (train[0].id, test[-1].id) == ("generated-train-0000", "generated-test-0999")
    assert not {p.question for p in train} & {p.question for p in test}  # held out means never trained on
    assert datasets.load("generated", split="test", limit=5) == test[:5]  # the same problems every time
    assert {category(p.question) for p in test} == {"money", "time", "fraction", "count"}
    with pytest.raises(ConfigError, match="no split 'dev'"):
        datasets.load("generated", split="dev")


def test_the_simulator_knows_the_generated_answers_without_a_data_dir(tmp_path: Path):
    problem = datasets.load("generated", split="test", limit=1)[0]
    model = SimModel(1.0, brain=SimBrain(accuracy=1.0, data_dir=tmp_path))
    from hyperteam.topologies import load_team

    result = load_team("single").run_sync(problem.question, model=model)
    assert result.answer == problem.answer


def test_partners_per_agent_from_the_team_spec_and_the_cli(tmp_path: Path):
    pytest.importorskip("torch")
    from hyperteam.topologies import load_team
    from hyperteam.topologies.learned.team import LearnedHypergraphTeam

    agents = load_team("hyperagent-gsm8k").agents
    team = LearnedHypergraphTeam(agents=agents, topology={"learner": "hyperagent", "k": 1})
    assert team.generator.k == 1
    assert all(len(edge) == 2 for edge in team.topology_for("Ann buys 3 pens at $2 each."))  # itself + 1 partner
    with pytest.raises(ConfigError, match="applies to learner hyperagent"):
        LearnedHypergraphTeam(agents=agents, topology={"learner": "gdesigner", "k": 1}).generator  # noqa: B018
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        LearnedHypergraphTeam(agents=agents, topology={"learner": "hyperagent", "k": 0})

    out = tmp_path / "topo.json"
    base = ["train", "--topology", "hyperagent", "--team", "hyperagent-gsm8k", "--suite", "generated"]
    proc = hyperteam(
        *base, "--train", "4", "--val", "0", "--batch", "2", "--samples-per-query", "2", "--partners", "1",
        "--model", "sim:0.6?world=topology", "--out", str(out), "--test", "3", "--baseline", "self-consistency",
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["config"]["k"] == 1
    assert LearnedHypergraphTeam(topology={"learned": str(out)}).generator.k == 1  # the file's own
    assert LearnedHypergraphTeam(topology={"learned": str(out), "k": 3}).generator.k == 3  # overridden
    report = json.loads((tmp_path / "topo.report.json").read_text())
    assert all(len(edge) == 2 for row in report["topologies"]["per_problem"] for edge in row["hyperedges"])
    # The learned topology against complete on the same problems: a paired difference and McNemar's p.
    vs = report["paired"]["complete"]
    assert vs["n"] == 3 and vs["both"] + vs["only_a"] + vs["only_b"] <= 3 and 0 <= vs["mcnemar_p"] <= 1
    assert "hyperagent (learned) - complete: accuracy" in proc.stdout
    assert "correct" not in report["comparison"]["complete"]
    # Self-consistency at the learned topology's tokens per problem: a row of its own, paired too. Fifteen
    # calls a problem cost more than 32 samples do, so it says that this is not an equal-token comparison.
    assert report["self_consistency"]["samples"] == 32 and report["self_consistency"]["equal_tokens"] is False
    learned, sc = report["comparison"]["hyperagent (learned)"], report["comparison"]["self-consistency x32"]
    assert sc["tokens_per_problem"] / learned["tokens_per_problem"] == pytest.approx(
        report["self_consistency"]["token_ratio"], abs=1e-3
    )
    assert report["paired"]["self-consistency x32"]["n"] == 3
    assert "hyperagent (learned) - self-consistency x32: accuracy" in proc.stdout
    assert "note: self-consistency x32 spent 0." in proc.stdout and "NOT an equal-token comparison" in proc.stdout
    assert_one_line_error(hyperteam(*base, "--out", str(out), "--baseline", "self-consistency"), "--test N")
    assert_one_line_error(hyperteam(*base, "--out", str(out), "--partners", "0"), "--partners")
    gd = ["train", "--topology", "gdesigner", "--team", "complete", "--suite", "generated", "--out", str(out)]
    assert_one_line_error(hyperteam(*gd, "--partners", "1"), "--partners applies to --topology hyperagent")
    textual = ["train", "--team", "ann-gsm8k", "--suite", "generated", "--model", "sim:0.6", "--out", str(tmp_path)]
    assert_one_line_error(hyperteam(*textual, "--partners", "1"), "--partners applies to --topology training only")
