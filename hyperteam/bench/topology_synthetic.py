"""``hyperteam bench topology-synthetic``: do the topology learners find the right groups? No LLM involved.

The environment: six agents and three classes of query. Each class has a
known set of collaboration groups that solve it (two groups of three, three
pairs, or two other groups of three). A hypergraph earns, for each required
group, the share of the group's member pairs that share a hyperedge; the
query is solved with probability equal to the mean of those shares, and
training sees that 0/1 outcome. Tokens are counted the way a
:class:`~hyperteam.topologies.hypergraph.HypergraphTeam` spends them: every
agent reads the output of each member of each of its hyperedges (its own
included) in each round, so a hyperedge of m agents costs m² outputs and an
agent in no hyperedge one. Utility = solved − λ · tokens, so every extra
group costs, and the best topology for a class is exactly its groups.

Fairness: nothing here needs hyperedges. A pairwise learner covers a group
of three with a triangle, at 12 outputs instead of 9, so its best reachable
utility is about 95% of the optimum; the pair class is solved by pairs alone.
The query-independent learner (AgentPrune) must settle on one graph for all
classes, and the fixed chain anchor covers only some pairs of some groups.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem

AGENTS = [
    ("planner", "a planner who splits the problem into steps"),
    ("calculator", "a calculator who does the arithmetic"),
    ("checker", "a checker who verifies each step"),
    ("geometer", "a geometer who draws the figure"),
    ("logician", "a logician who tracks the conditions"),
    ("writer", "a writer who states the final answer"),
]
CLASSES: dict[str, tuple[str, list[tuple[int, ...]]]] = {
    "arithmetic": ("add multiply the prices and quantities of apples", [(0, 1, 2), (3, 4, 5)]),
    "geometry": ("find the area angle and perimeter of the triangle", [(0, 3), (1, 4), (2, 5)]),
    "logic": ("which statement is true if every knight lies", [(0, 1, 5), (2, 3, 4)]),
}
FILLER = "the a of in on with from some many few old new red blue small large first last".split()
TOKENS_PER_OUTPUT = 100
TOKEN_PENALTY = 1e-4  # λ: one output (100 tokens) costs 0.01 utility
LEARNERS = ("hyperagent", "gdesigner", "agentprune")
LR = 0.003
BATCH = 6  # queries per step
SAMPLES = 16  # sampled topologies per query (the trainer's default)
OUTCOMES = ("coverage", "bernoulli")


def coverage(groups: list[tuple[int, ...]], hyperedges: list[tuple[int, ...]]) -> float:
    """Mean over required groups of the share of their member pairs that share a hyperedge."""
    together = {frozenset(p) for e in hyperedges for p in itertools.combinations(e, 2)}
    shares = []
    for g in groups:
        pairs = list(itertools.combinations(g, 2))
        shares.append(sum(frozenset(p) in together for p in pairs) / len(pairs))
    return sum(shares) / len(shares)


def token_cost(hyperedges: list[tuple[int, ...]], n: int = len(AGENTS)) -> int:
    """Tokens of one run: m² outputs per hyperedge of m agents, one per agent in none."""
    members = {a for e in hyperedges for a in e}
    return TOKENS_PER_OUTPUT * (sum(len(e) ** 2 for e in hyperedges) + (n - len(members)))


def expected_utility(klass: str, hyperedges: list[tuple[int, ...]]) -> float:
    return coverage(CLASSES[klass][1], hyperedges) - TOKEN_PENALTY * token_cost(hyperedges)


def optimal_utility(klass: str) -> float:
    """The utility of exactly the class's groups (no cheaper topology covers them all)."""
    return expected_utility(klass, CLASSES[klass][1])


def chain_hyperedges(n: int = len(AGENTS)) -> list[tuple[int, ...]]:
    return [(i, i + 1) for i in range(n - 1)]


def queries(per_class: int, seed: int) -> list[Problem]:
    """``per_class`` queries of each class: the class's sentence plus random filler words; answer = class."""
    rng = random.Random(seed)
    out = []
    for klass, (sentence, _) in CLASSES.items():
        for i in range(per_class):
            noise = " ".join(rng.choice(FILLER) for _ in range(6))
            out.append(
                Problem(id=f"{klass}-{seed}-{i}", question=f"{sentence} {noise} #{rng.randrange(1000)}", answer=klass)
            )
    return out


@dataclass
class SyntheticReward:
    """The environment as a training reward: correctness = coverage (or a 0/1 draw with that probability)."""

    seed: int = 0
    noisy: bool = False

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._index = {name: i for i, (name, _) in enumerate(AGENTS)}

    def __call__(self, problems: Any, topologies: list[list[list[list[str]]]]) -> list[list[Any]]:
        from hyperteam.optim.topology.reward import Outcome

        out = []
        for problem, hs in zip(problems, topologies, strict=True):
            row = []
            for h in hs:
                edges = [tuple(self._index[m] for m in e) for e in h]
                solved = coverage(CLASSES[problem.answer][1], edges)
                if self.noisy:
                    solved = float(self._rng.random() < solved)
                row.append(Outcome(solved, float(token_cost(edges))))
            out.append(row)
        return out


def fraction(learner: Any, test: list[Problem]) -> float:
    """Mean expected utility of the learner's ``best`` topologies over the mean optimal utility."""
    index = {name: i for i, (name, _) in enumerate(AGENTS)}
    got = sum(expected_utility(p.answer, [tuple(index[m] for m in e) for e in learner.best(p.question)]) for p in test)
    best = sum(optimal_utility(p.answer) for p in test)
    return got / best


def train(
    name: str, *, steps: int, seed: int, noisy: bool = False, target: float = 0.9, eval_every: int = 10
) -> dict[str, Any]:
    """Trains one learner from the anchor warm start, as ``hyperteam train --topology`` does."""
    """Trains one learner; returns its final optimal fraction and the steps it took to reach ``target``."""
    import torch

    from hyperteam.agents.agent import Agent
    from hyperteam.optim.topology.reinforce import train_step
    from hyperteam.topologies.learned import LEARNERS as KINDS

    learner = KINDS[name]([Agent(name=n, role=r) for n, r in AGENTS], seed=seed)
    if hasattr(learner, "anchor_init"):
        learner.anchor_init()
    train_set, test_set = queries(8, seed), queries(4, seed + 1000)
    reward = SyntheticReward(seed, noisy=noisy)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=LR)
    rng = random.Random(seed)
    reached: int | None = None
    started = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(learner, rng.sample(train_set, BATCH), reward, SAMPLES, TOKEN_PENALTY, optimizer)
        if reached is None and step % eval_every == 0 and fraction(learner, test_set) >= target:
            reached = step
    alone = getattr(learner, "working_alone", None)
    return {
        "optimal_fraction": round(fraction(learner, test_set), 4),
        "working_alone": sum(len(alone(p.question)) for p in test_set) / len(test_set) if alone else None,
        "steps": reached if reached is not None else steps,
        "reached": reached is not None,
        "seconds": round(time.perf_counter() - started, 2),
    }


def anchor_fraction() -> float:
    test = queries(4, 1000)
    got = sum(expected_utility(p.answer, chain_hyperedges()) for p in test)
    return got / sum(optimal_utility(p.answer) for p in test)


def run(learners: list[str], *, steps: int, seeds: list[int], noisy: bool = False) -> dict[str, Any]:
    """The benchmark's results: every learner's figures (mean over ``seeds``, and per seed) and the chain anchor's."""
    out: dict[str, Any] = {}
    for name in learners:
        runs = [train(name, steps=steps, seed=seed, noisy=noisy) for seed in seeds]
        alone = [r["working_alone"] for r in runs if r["working_alone"] is not None]
        out[name] = {
            "optimal_fraction": round(sum(r["optimal_fraction"] for r in runs) / len(runs), 4),
            "steps": max(r["steps"] for r in runs),
            "reached": all(r["reached"] for r in runs),
            "seconds": round(sum(r["seconds"] for r in runs), 2),
            "working_alone": round(sum(alone) / len(alone), 3) if alone else None,
            "per_seed": {str(seed): r["optimal_fraction"] for seed, r in zip(seeds, runs, strict=True)},
        }
    return {"learners": out, "anchor_chain": {"optimal_fraction": round(anchor_fraction(), 4)}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench topology-synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per learner (default 400)")
    parser.add_argument("--learners", default=",".join(LEARNERS), help=f"comma list of {', '.join(LEARNERS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds, each a full run (default 0,1,2)")
    parser.add_argument("--seed", type=int, help="one seed (same as --seeds S)")
    parser.add_argument(
        "--outcomes",
        choices=OUTCOMES,
        default="coverage",
        help="what training sees: the expected correctness (coverage), or right/wrong drawn from it (bernoulli),"
        " as a real run gives",
    )
    parser.add_argument("--noisy", action="store_true", help="same as --outcomes bernoulli")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise ConfigError("--steps must be >= 1")
    try:
        seeds = [args.seed] if args.seed is not None else [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    if not seeds:
        raise ConfigError("--seeds names no seed")
    learners = [x for x in args.learners.split(",") if x]
    unknown = [x for x in learners if x not in LEARNERS]
    if unknown or not learners:
        raise ConfigError(f"unknown learner(s) {', '.join(unknown) or '(none)'}; known: {', '.join(LEARNERS)}")
    from hyperteam.topologies.learned._torch import require_torch

    require_torch().set_num_threads(1)  # the models are tiny: threads only add overhead
    noisy = args.noisy or args.outcomes == "bernoulli"
    results = run(learners, steps=args.steps, seeds=seeds, noisy=noisy)
    print(
        f"topology-synthetic: 6 agents, 3 query classes, λ={TOKEN_PENALTY} per token, {args.steps} steps, "
        f"outcomes {'bernoulli (right/wrong)' if noisy else 'coverage'}, seeds {','.join(map(str, seeds))} (no LLM)"
    )
    header = (
        f"{'learner':<14}{'optimal_fraction':>18}{'per seed':>22}{'steps_to_0.9':>14}{'alone/query':>13}{'seconds':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results["learners"].items():
        steps = str(r["steps"]) if r["reached"] else f">{r['steps']}"
        per_seed = " ".join(f"{v:.3f}" for v in r["per_seed"].values())
        alone = "-" if r["working_alone"] is None else f"{r['working_alone']:.2f}"
        print(f"{name:<14}{r['optimal_fraction']:>18.3f}{per_seed:>22}{steps:>14}{alone:>13}{r['seconds']:>9.1f}")
    print(f"{'anchor_chain':<14}{results['anchor_chain']['optimal_fraction']:>18.3f}")
    if args.json_path:
        out = {
            "outcomes": "bernoulli" if noisy else "coverage",
            "seeds": seeds,
            "learners": {
                n: {k: r[k] for k in ("optimal_fraction", "steps", "per_seed", "working_alone")}
                for n, r in results["learners"].items()
            },
            "anchor_chain": results["anchor_chain"],
        }
        Path(args.json_path).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0
