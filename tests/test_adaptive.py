"""``adaptive`` fusion that adapts: trust conditioned on the query, a balancing term, online training
by ``hyperteam eval --adapt`` (scored before learned from), state in the team file, and its bench."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.agents.messages import AgentOutput
from hyperteam.bench import run_benchmark
from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import evaluate
from hyperteam.evals.store import ResultStore
from hyperteam.fusion import get_fusion
from hyperteam.fusion.base import FusionContext
from hyperteam.testing import FunctionModel


def _ctx() -> FusionContext:
    return FusionContext("solve", lambda spec: None)  # type: ignore[arg-type, return-value]


def _outs(**answers: str) -> list[AgentOutput]:
    return [AgentOutput(agent, f"#### {a}", a) for agent, a in answers.items()]


MONEY = "Sam pays 3 dollars for each apple and buys {n} apples. How many dollars does he pay?"
TIME = "A train runs {n} miles every hour for 2 hours. How many miles does it run?"


async def test_trust_is_learned_per_kind_of_query_from_right_or_wrong_alone():
    # "cash" is right on money questions, "clock" on time questions; "noise" is always wrong.
    fusion = get_fusion("adaptive")
    for n in range(40):
        money, time = MONEY.format(n=n), TIME.format(n=n)
        fusion = fusion.feedback(_outs(cash="1", clock="2", noise="3"), "1", task=money)
        fusion = fusion.feedback(_outs(cash="2", clock="1", noise="3"), "1", task=time)
    assert fusion.scores == {}  # with the query, the prior stays put and the weights learn
    money, time = MONEY.format(n=99), TIME.format(n=99)  # questions never seen
    assert fusion.reliability("cash", money) > 0.7 > 0.3 > fusion.reliability("clock", money)
    assert fusion.reliability("clock", time) > 0.7 > 0.3 > fusion.reliability("cash", time)
    # Two against one, and the one is the agent to trust for this kind of question.
    disagree = _outs(cash="7", clock="8", noise="8")
    assert (await fusion.fuse(money, disagree, _ctx())).output.answer == "7"
    assert (await fusion.fuse(time, _outs(cash="7", clock="9", noise="7"), _ctx())).output.answer == "9"
    # The learned state is plain data in the spec: it round-trips.
    assert get_fusion(fusion.spec()) == fusion


async def test_the_balancing_term_keeps_selection_off_one_subset():
    outputs = _outs(a="1", b="2", c="3")
    fusion = get_fusion({"name": "adaptive", "top_k": 1, "balance": 2.0})
    assert fusion.select(outputs, "q")[0].agent == "a"  # equal trust: agent order
    # "a" has been in every selection, "b" in none: at equal reliability the term picks "b".
    busy = fusion.model_copy(update={"selected": {"a": 1.0, "b": 0.0, "c": 0.4}})
    assert busy.select(outputs, "q")[0].agent == "b"
    # It shifts the ranking, not the evidence: a clearly better source keeps its place.
    trusted = busy.model_copy(update={"scores": {"a": 0.95, "b": 0.5, "c": 0.5}})
    assert trusted.select(outputs, "q")[0].agent == "a"
    # Feedback with the query tracks the rates: the selected source's rate rises.
    after = fusion.feedback(outputs, "1", task="q")
    assert after.selected["a"] > fusion.selected.get("a", 1 / 3) and after.selected["b"] < 1 / 3


def _team(tmp_path: Path) -> ht.LayeredTeam:
    # s0 is right; s1 and s2 agree on a wrong answer: majority is wrong, a learned trust is right.
    def respond(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        who = re.search(r"You are (\w+)", user).group(1)  # type: ignore[union-attr]
        gold = re.search(r"gold (\d+)", user).group(1)  # type: ignore[union-attr]
        return f"#### {gold}" if who == "s0" else "#### 999"

    agents = [ht.Agent(name=f"s{i}") for i in range(3)]
    return ht.LayeredTeam([ht.Layer("solve", agents=agents, fusion="adaptive")], model=FunctionModel(respond))


PROBLEMS = [
    Problem(id=f"p{i}", question=f"Question {i}: what is the gold {i + 10}?", answer=str(i + 10)) for i in range(12)
]


def test_eval_adapt_scores_each_problem_before_learning_from_it(tmp_path: Path):
    team = _team(tmp_path)
    store = ResultStore(tmp_path / "run.sqlite")
    try:
        report = asyncio.run(evaluate(team, PROBLEMS, concurrency=1, store=store, adapt=True))
        rows = sorted(store.rows(), key=lambda r: r.idx)
    finally:
        store.close()
    correct = [r.correct_strict for r in rows]
    assert correct[0] is False  # nothing learned yet: the wrong majority wins the first problem
    assert all(correct[-4:])  # ...and once s0 has earned trust, its answer wins
    assert report["accuracy"]["strict"] == pytest.approx(sum(correct) / len(correct), abs=1e-6)
    learned = get_fusion(team.layers[0].fusion)
    assert learned.weights["s0"][0] > 0 > learned.weights["s1"][0]  # the biases moved apart
    # The learned state goes into the team file and comes back.
    team.save(tmp_path / "adapted.json")
    assert ht.load_team(str(tmp_path / "adapted.json")).layers[0].fusion == team.layers[0].fusion


def test_eval_adapt_resumes_with_what_it_had_learned_and_refuses_a_team_without_adaptive(tmp_path: Path):
    whole = _team(tmp_path)
    asyncio.run(evaluate(whole, PROBLEMS, concurrency=1, adapt=True))
    first, second = _team(tmp_path), _team(tmp_path)
    path = tmp_path / "resume.sqlite"
    asyncio.run(evaluate(first, PROBLEMS[:6], concurrency=1, store=path, adapt=True))
    asyncio.run(evaluate(second, PROBLEMS, concurrency=1, store=path, adapt=True, resume=True))
    assert second.layers[0].fusion == whole.layers[0].fusion  # replayed the six stored problems in order
    plain = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a")])], model=whole.model)
    with pytest.raises(ConfigError, match="has no 'adaptive' fusion"):
        asyncio.run(evaluate(plain, PROBLEMS[:1], adapt=True))


def test_bench_adaptive_writes_the_three_fusions(tmp_path: Path, capsys):
    out = tmp_path / "adaptive.json"
    assert run_benchmark("adaptive", ["--train", "200", "--test", "100", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"majority_vote", "adaptive", "oracle", "online", "simulated"} <= set(data)
    assert data["simulated"] is True and data["world"] == "topology"
    assert data["adaptive"] > data["majority_vote"]  # trust by kind of question pays, even after 200
    assert data["oracle"] >= data["majority_vote"]
    assert "SIMULATED" in capsys.readouterr().out


def test_eval_adapt_from_the_command_line_saves_the_adapted_team(tmp_path: Path):
    from tests.test_cli import assert_one_line_error, hyperteam

    spec = tmp_path / "team.yaml"
    spec.write_text(
        "name: voters\nlayers:\n  - name: solve\n    agents: [{name: a}, {name: b}, {name: c}]\n    fusion: adaptive\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    proc = hyperteam("eval", "demo", "--team", str(spec), "--model", "sim:0.7", "--limit", "6", "--adapt",
                     "--out", str(out), "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    adapted = json.loads((out / "team.adapted.json").read_text())
    assert set(adapted["layers"][0]["fusion"]["weights"]) == {"a", "b", "c"}
    assert_one_line_error(
        hyperteam(
            "eval",
            "demo",
            "--team",
            "single",
            "--model",
            "sim:0.7",
            "--limit",
            "2",
            "--adapt",
            "--out",
            str(tmp_path / "single"),
        ),
        "has no 'adaptive' fusion",
    )
