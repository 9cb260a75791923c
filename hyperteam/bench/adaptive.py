"""``hyperteam bench adaptive``: does ``adaptive`` fusion learn whom to trust, from right/wrong alone? SIMULATED.

The world: the simulator's ``topology`` world (:mod:`hyperteam.testing.sim.worlds.topology`),
one layer of the five built-in math agents on generated word problems. Each
problem has a category read from its wording (money, time, fraction, count),
and one agent is the expert of each category (right with probability
``ACC + 0.4``) while the others are right with probability ``ACC``; ``tutor``
is expert in nothing. So the agent to trust depends on the question.

Three fusions of the *same* agent answers (one run of the agents per problem,
so the comparison is paired):

- ``majority_vote``: every agent alike;
- ``adaptive``: trained online by ``hyperteam eval --adapt``'s machinery on
  the first ``--train`` problems (each scored before it is learned from; its
  accuracy there is the prequential ``online_accuracy``), then frozen and
  scored on the ``--test`` held-out problems;
- ``oracle``: a weighted vote that knows every agent's true accuracy on the
  problem's category (log-odds weights, every agent votes): the best this
  vote can do, and the target adaptive is measured against.

The held-out accuracies are the result; SIMULATED, a check of the mechanism,
never a claim about real models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path
from typing import Any

from hyperteam.agents.messages import AgentOutput
from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.models.types import Usage

WORLD = "topology"


def _team(fusion: dict[str, Any]) -> Any:
    from hyperteam.topologies import load_team
    from hyperteam.topologies.layered import Layer, LayeredTeam

    agents = load_team("complete").agents  # the five built-in math agents
    return LayeredTeam([Layer("solve", agents=agents, fusion=fusion)], name="adaptive-bench")


def _model(accuracy: float, seed: int, problems: list[Problem]) -> Any:
    from hyperteam.testing.sim import SimBrain, SimModel

    brain = SimBrain(accuracy=accuracy, seed=seed, problems=problems, world=WORLD)
    return SimModel(accuracy, brain=brain, world=WORLD)


def _outputs(row: Any) -> list[AgentOutput]:
    return [
        AgentOutput(e["agent"], "", e.get("answer") if e.get("error") is None else None, Usage(), error=e.get("error"))
        for e in row.trace
        if e.get("kind") == "agent" and e.get("layer") == "solve"
    ]


def _oracle_weight(accuracy: float, question: str, agent: Any) -> float:
    from hyperteam.testing.sim.worlds.topology import agent_chance

    p = min(0.99, max(0.01, agent_chance(accuracy, question, agent.name, [], f"{agent.role} {agent.instructions}")))
    return math.log(p / (1 - p))


def _rescore(rows: list[Any], accuracy: float, agents: list[Any]) -> dict[str, float]:
    """Majority and oracle accuracy over the agent answers stored in ``rows``."""
    from hyperteam.fusion.vote import plurality, weighted_plurality

    by_name = {a.name: a for a in agents}
    majority = oracle = 0
    for row in rows:
        outs = _outputs(row)
        majority += plurality(outs)[0] == row.gold
        weights = {o.agent: _oracle_weight(accuracy, row.question, by_name[o.agent]) for o in outs}
        winner, _ = weighted_plurality(outs, lambda o, w=weights: w[o.agent])
        oracle += winner == row.gold
    n = max(len(rows), 1)
    return {"majority_vote": majority / n, "oracle": oracle / n}


async def _run(team: Any, problems: list[Problem], model: Any, *, adapt: bool) -> tuple[float, list[Any]]:
    from hyperteam.evals.runner import evaluate
    from hyperteam.evals.store import ResultStore

    store = ResultStore(":memory:")
    try:
        # One problem at a time: online learning in a fixed order, so a seed gives the same numbers.
        report = await evaluate(team, problems, concurrency=1, store=store, model=model, adapt=adapt)
        rows = sorted(store.rows(), key=lambda r: r.idx)
    finally:
        store.close()
    return report["accuracy"]["strict"], rows


def run(*, train: int, test: int, accuracy: float, seed: int, fusion: dict[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark's figures for one seed."""
    from hyperteam.evals.generated import generate

    problems = generate(train + test, seed=seed, prefix=f"adaptive{seed}")
    model = _model(accuracy, seed, problems)
    team = _team(fusion or {"name": "adaptive"})
    agents = team.layers[0].agents
    online, train_rows = asyncio.run(_run(team, problems[:train], model, adapt=True))
    held_out, test_rows = asyncio.run(_run(team, problems[train:], model, adapt=False))
    scores = _rescore(test_rows, accuracy, agents)
    return {
        "simulated": True,
        "world": WORLD,
        "accuracy": accuracy,
        "seed": seed,
        "train": train,
        "test": test,
        "majority_vote": round(scores["majority_vote"], 4),
        "adaptive": round(held_out, 4),
        "oracle": round(scores["oracle"], 4),
        "adaptive_minus_majority": round(held_out - scores["majority_vote"], 4),
        "adaptive_over_oracle": round(held_out / scores["oracle"], 4) if scores["oracle"] else None,
        "online": {
            "adaptive": round(online, 4),
            **{k: round(v, 4) for k, v in _rescore(train_rows, accuracy, agents).items()},
        },
        "fusion": team.layers[0].fusion,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench adaptive", description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=400, help="problems adaptive learns from online (default 400)")
    parser.add_argument("--test", type=int, default=400, help="held-out problems, scored frozen (default 400)")
    parser.add_argument("--accuracy", type=float, default=0.45, help="the non-experts' accuracy ACC (default 0.45)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the problems and the simulator")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    parser.add_argument("--save-fusion", type=Path, help="write the learned fusion spec (JSON) to this file")
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        raise ConfigError("--train and --test must be >= 1")
    if not 0.0 <= args.accuracy <= 0.58:
        raise ConfigError(f"--accuracy must be in [0, 0.58] (experts add 0.4), got {args.accuracy}")
    r = run(train=args.train, test=args.test, accuracy=args.accuracy, seed=args.seed)
    print(
        f"adaptive (SIMULATED, world {WORLD}): 5 agents, experts by category, ACC {args.accuracy}, "
        f"{args.train} problems online then {args.test} held out, seed {args.seed}"
    )
    header = f"{'fusion':<16}{'held-out accuracy':>19}{'online (train)':>16}"
    print(header)
    print("-" * len(header))
    for name in ("majority_vote", "adaptive", "oracle"):
        print(f"{name:<16}{r[name]:>19.3f}{r['online'][name]:>16.3f}")
    print(
        f"adaptive - majority_vote: {100 * r['adaptive_minus_majority']:+.1f} points; "
        f"adaptive / oracle: {r['adaptive_over_oracle']:.3f}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    if args.save_fusion:
        Path(args.save_fusion).write_text(json.dumps(r["fusion"], indent=2) + "\n", encoding="utf-8")
    return 0
