"""The SIMULATED ``topology`` world: the category's expert helps whoever shares a hyperedge with it."""

from __future__ import annotations

import asyncio

import pytest

from hyperteam.evals.generated import generate
from hyperteam.evals.runner import evaluate
from hyperteam.testing.sim import SimBrain, SimModel
from hyperteam.testing.sim.worlds import get_world
from hyperteam.testing.sim.worlds.topology import PEER, SELF, agent_chance, best_hyperedges, category, expert
from hyperteam.topologies import load_team
from hyperteam.topologies.hypergraph import HypergraphTeam

NAMES = ["tutor", "algebraist", "accountant", "estimator", "skeptic"]


def test_categories_experts_and_chances():
    assert category("She pays 3 dollars for 2 apples.") == "money"
    assert category("He walks 3 miles in 2 hours.") == "time"
    assert category("Half of the 40 pupils are girls; 25% of them wear hats.") == "fraction"
    assert category("Ann has 4 more marbles than Bob, who has 7.") == "count"
    assert category("It costs 5 dollars per hour, and the price doubles.") == "money"  # most keywords win
    assert expert("accountant") == {"money"} and expert("tutor") == set()  # "accountant" is not "count"
    assert [n for n in NAMES if expert(n)] == ["algebraist", "accountant", "estimator", "skeptic"]
    q = "She pays 3 dollars for 2 apples."
    assert agent_chance(0.4, q, "tutor", []) == pytest.approx(0.4)
    assert agent_chance(0.4, q, "accountant", []) == pytest.approx(0.4 + SELF)
    assert agent_chance(0.4, q, "tutor", ["tutor", "accountant"]) == pytest.approx(0.4 + PEER)
    assert agent_chance(0.4, q, "tutor", ["tutor", "estimator", "skeptic"]) == pytest.approx(0.4)  # no money expert
    assert best_hyperedges(q, NAMES) == [["tutor", "accountant"], ["algebraist", "accountant"],
                                         ["accountant", "estimator"], ["accountant", "skeptic"]]  # fmt: skip


def test_the_world_reads_hyperedges_from_prompts_and_topology_decides_accuracy():
    assert get_world("topology").name == "topology"
    problems = generate(60, seed=3, prefix="tw")
    model = SimModel(0.4, brain=SimBrain(accuracy=0.4, seed=3, problems=problems, world="topology"), world="topology")
    agents = load_team("complete").agents

    def accuracy(team: HypergraphTeam, subset: list) -> float:
        return asyncio.run(evaluate(team, subset, model=model, concurrency=8))["accuracy"]["strict"]

    alone = accuracy(HypergraphTeam(agents, [], rounds=2), problems)
    complete = accuracy(HypergraphTeam(agents, [NAMES], rounds=2), problems)
    assert complete > alone + 0.15
    # The best topology per category (a star around its expert) is as accurate as complete, for fewer tokens.
    money = [p for p in problems if category(p.question) == "money"]
    star = HypergraphTeam(agents, best_hyperedges(money[0].question, NAMES), rounds=2)
    wrong_star = HypergraphTeam(agents, best_hyperedges("4 more than 7", NAMES), rounds=2)  # the count expert's
    assert accuracy(star, money) >= accuracy(HypergraphTeam(agents, [NAMES], rounds=2), money) - 0.1
    assert accuracy(star, money) > accuracy(wrong_star, money)
