"""``hyperteam bench learn``: does textual backprop learn what holds on unseen problems? SIMULATED.

Two SIMULATED worlds, the same trainer, several seeds each:

* ``skills`` (``sim:ACC?world=skills``): an agent is more often right when its
  instructions address the problem's latent pitfalls, the built-in
  ``ann-gsm8k``'s verify layer hurts, and the optimizer's evaluator, gradients
  and updater are noisy (see :mod:`hyperteam.testing.sim.worlds.skills`). The
  optimum is computable; the score is the share of the achievable test gain
  the trained team recovers: (trained - untrained) / (optimum - untrained).
* ``plain`` (``sim:ACC``): an agent's accuracy does not depend on its prompt,
  so prompt learning (the updater may only edit roles and instructions here)
  cannot help: the null control. The trained team's test accuracy must not
  move, and the report says whether the change is significant (pooled exact
  McNemar test over the seeds). Its "optimum" is the untrained team's expected
  test accuracy (mean over re-drawn answers), since every prompt is as good.

Beside each trained team, self-consistency runs on the same test problems
with as many samples as match the trained team's tokens per problem
(``Trainer(baseline="self-consistency")``): a learned team that does not beat
it has learned to spend tokens, not to solve problems.

Each seed shuffles the problems: training and validation come from GSM8K's
train split and test problems from its test split when ``HYPERTEAM_DATA_DIR``
holds GSM8K; otherwise all three come from disjoint generated word problems
(:mod:`hyperteam.evals.generated`), which the output says.
A check of the mechanism, never a claim about real models.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals import datasets
from hyperteam.evals.datasets import Problem
from hyperteam.evals.stats import mcnemar_exact
from hyperteam.optim.patch import OP_NAMES
from hyperteam.optim.trainer import Trainer
from hyperteam.topologies.builtin import ann_gsm8k
from hyperteam.topologies.io import team_from_dict, team_to_dict
from hyperteam.topologies.layered import LayeredTeam

WORLDS = ("skills", "plain")
PROMPT_OPS = ("set_role", "set_instructions")
RECOVERY_GOAL = 0.5
NULL_BAND = 0.03
PLAIN_REDRAWS = 4  # untrained test runs with re-drawn answers, for the plain world's expected accuracy


def _problems(n_train: int, n_val: int, n_test: int, seed: int) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """Train, val and test problems for one seed; GSM8K when on disk, else generated ones."""
    if _has_gsm8k():
        pool = datasets.load("gsm8k", split="train")
        test_pool = datasets.load("gsm8k", split="test")
        random.Random(seed).shuffle(pool)
        random.Random(seed + 10_000).shuffle(test_pool)
        if len(pool) < n_train + n_val or len(test_pool) < n_test:
            raise ConfigError("GSM8K has too few problems for --train + --val or --test")
        return pool[:n_train], pool[n_train : n_train + n_val], test_pool[:n_test]
    from hyperteam.evals.generated import generate

    problems = generate(n_train + n_val + n_test, seed=seed, prefix=f"gen{seed}")
    return problems[:n_train], problems[n_train : n_train + n_val], problems[n_train + n_val :]


def _has_gsm8k() -> bool:
    raw = os.environ.get(datasets.DATA_DIR_ENV)
    if not raw:
        return False
    try:
        return all(datasets.suite_path("gsm8k", split=s).is_file() for s in ("train", "test"))
    except ConfigError:
        return False


def _model(world: str, accuracy: float, seed: int, extra: list[Problem]) -> Any:
    from hyperteam.testing.sim import SimBrain, SimModel

    name = None if world == "plain" else world
    brain = SimBrain(accuracy=accuracy, seed=seed, problems=extra, world=name)
    return SimModel(accuracy, brain=brain, world=name)


def run_seed(world: str, seed: int, cfg: argparse.Namespace) -> dict[str, Any]:
    """Trains ``ann-gsm8k`` in one world for one seed; returns its test numbers."""
    train, val, test = _problems(cfg.train, cfg.val, cfg.test, seed)
    generated = [] if _has_gsm8k() else [*train, *val, *test]
    model = _model(world, cfg.accuracy, seed, generated)
    team = ann_gsm8k()
    assert isinstance(team, LayeredTeam)
    started = time.perf_counter()
    trainer = Trainer(
        team, train=train, val=val, test=test, model=model, epochs=cfg.epochs, batch=cfg.batch,
        val_batch=cfg.val_batch, seed=seed, ops=PROMPT_OPS if world == "plain" else OP_NAMES,
        concurrency=cfg.concurrency, log=lambda line: None, baseline="self-consistency",
    )  # fmt: skip
    report = trainer.fit_sync()
    test_report = report["test"]
    optimum, exact = _optimum(world, cfg, seed, train, test, generated)
    untrained, trained = test_report["untrained"], test_report["trained"]
    sc = test_report["self_consistency"]
    gain = optimum - untrained
    return {
        "seed": seed,
        "untrained_test": untrained,
        "trained_test": trained,
        "optimum_test": optimum,
        "optimum_exact": exact,
        "initial_val": report["initial_val"],
        "final_val": report["final_val"],
        "change": trained - untrained,
        "recovered": (trained - untrained) / gain if gain > 0 else None,
        "p_value": test_report["p_value"],
        "only_untrained_right": test_report["only_untrained_right"],
        "only_trained_right": test_report["only_trained_right"],
        "trained_tokens": test_report["trained_tokens"],
        # Self-consistency at the trained team's tokens per problem, on the same test problems.
        "sc_test": sc["accuracy"],
        "sc_samples": sc["samples"],
        "sc_token_ratio": sc["token_ratio"],
        "sc_minus_trained": sc["diff"],
        "sc_p_value": sc["p_value"],
        "steps": report["steps_run"],
        "accepted": report["steps_accepted"],
        "layers": [layer.name for layer in trainer.team.layers],
        "failed_problems": report["failures"]["failed"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def _optimum(
    world: str, cfg: argparse.Namespace, seed: int, train: list[Problem], test: list[Problem], extra: list[Problem]
) -> tuple[float, float | None]:
    """The best reachable test accuracy: simulated, and exact where the world computes it."""
    import asyncio

    from hyperteam.evals.runner import evaluate

    untrained = team_to_dict(ann_gsm8k())
    if world == "skills":
        from hyperteam.testing.sim.worlds import skills

        categories = skills.best_categories([p.question for p in train], cfg.accuracy)
        exact = skills.optimum_accuracy([p.question for p in test], cfg.accuracy, categories)
        teams = [(team_from_dict(skills.optimum_team(untrained, categories)), seed)]
    else:  # any prompt is as good as any other: the untrained team's expected accuracy
        exact = None
        teams = [(team_from_dict(untrained), 1_000 + seed * PLAIN_REDRAWS + k) for k in range(PLAIN_REDRAWS)]
    scores = []
    for team, brain_seed in teams:
        report = asyncio.run(
            evaluate(team, test, model=_model(world, cfg.accuracy, brain_seed, extra), concurrency=cfg.concurrency)
        )
        scores.append(report["accuracy"]["strict"])
    return statistics.fmean(scores), exact


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    """Every world and seed; returns the JSON-ready results."""
    started = time.perf_counter()
    out: dict[str, Any] = {
        "simulated": True,
        "problems": "gsm8k (HYPERTEAM_DATA_DIR)" if _has_gsm8k() else "generated word problems (GSM8K not found)",
        "config": {k: getattr(cfg, k) for k in ("train", "val", "test", "epochs", "batch", "val_batch", "accuracy")},
        "worlds": {},
    }
    for world in cfg.worlds:
        seeds = [run_seed(world, seed, cfg) for seed in range(cfg.seeds)]
        summary: dict[str, Any] = {
            "ops": "prompts only (set_role, set_instructions)" if world == "plain" else "all (prompts and structure)",
            "seeds": seeds,
            "mean_change": statistics.fmean(s["change"] for s in seeds),
            "mean_trained": statistics.fmean(s["trained_test"] for s in seeds),
            "mean_sc": statistics.fmean(s["sc_test"] for s in seeds),
        }
        b = sum(s["only_untrained_right"] for s in seeds)
        c = sum(s["only_trained_right"] for s in seeds)
        summary["pooled_p_value"] = mcnemar_exact(b, c)
        summary["significant"] = summary["pooled_p_value"] < 0.05
        if world == "skills":
            recovered = [s["recovered"] for s in seeds if s["recovered"] is not None]
            summary["mean_recovered"] = statistics.fmean(recovered) if recovered else None
            summary["passed"] = summary["mean_recovered"] is not None and summary["mean_recovered"] >= RECOVERY_GOAL
        else:
            summary["passed"] = abs(summary["mean_change"]) <= NULL_BAND and not summary["significant"]
        out["worlds"][world] = summary
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def table(results: dict[str, Any]) -> str:
    """The results as a fixed-width table with a verdict line per world."""
    head = (
        f"{'world':<8}{'seed':>5}{'untrained':>11}{'trained':>9}{'optimum':>9}{'val':>7}"
        f"{'change':>8}{'p':>9}{'recovered':>11}{'sc@tokens':>11}{'layers':>18}"
    )
    lines = [head, "-" * len(head)]
    for world, summary in results["worlds"].items():
        for s in summary["seeds"]:
            rec = "-" if s["recovered"] is None or world == "plain" else f"{s['recovered']:.2f}"
            lines.append(
                f"{world:<8}{s['seed']:>5}{s['untrained_test']:>11.3f}{s['trained_test']:>9.3f}"
                f"{s['optimum_test']:>9.3f}{s['final_val']:>7.3f}{s['change']:>+8.3f}{s['p_value']:>9.3g}"
                f"{rec:>11}{_sc_cell(s):>11}{','.join(s['layers']):>18}"
            )
    lines.append("")
    for world, summary in results["worlds"].items():
        lines.append(
            f"{world}: self-consistency at the trained team's tokens {summary['mean_sc']:.3f} vs trained "
            f"{summary['mean_trained']:.3f} (mean test accuracy)"
        )
    for world, summary in results["worlds"].items():
        verdict = "PASS" if summary["passed"] else "FAIL"
        sig = "significant" if summary["significant"] else "not significant"
        if world == "skills":
            rec = summary["mean_recovered"]
            lines.append(
                f"skills: mean recovered share of the achievable test gain {rec:.2f} (goal >= {RECOVERY_GOAL}); "
                f"mean change {summary['mean_change']:+.3f}, pooled McNemar p = {summary['pooled_p_value']:.3g} "
                f"({sig}) [{verdict}]"
            )
        else:
            lines.append(
                f"plain (null control, prompts only): mean test change {summary['mean_change']:+.3f} "
                f"(goal within ±{NULL_BAND}); pooled McNemar p = {summary['pooled_p_value']:.3g}: the change is "
                f"{sig} [{verdict}]"
            )
    return "\n".join(lines)


def _sc_cell(s: dict[str, Any]) -> str:
    """Self-consistency's test accuracy and its sample count, e.g. ``0.812x9``."""
    return f"{s['sc_test']:.3f}x{s['sc_samples']}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench learn", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per world (default 3)")
    parser.add_argument("--worlds", default=",".join(WORLDS), help="comma list of skills, plain (default both)")
    parser.add_argument("--train", type=int, default=160, help="training problems per seed (default 160)")
    parser.add_argument("--val", type=int, default=100, help="validation problems per seed (default 100)")
    parser.add_argument("--test", type=int, default=500, help="held-out test problems per seed (default 500)")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training problems (default 3)")
    parser.add_argument("--batch", type=int, default=8, help="problems per minibatch (default 8)")
    parser.add_argument("--val-batch", type=int, default=40, help="first acceptance check's size (default 40)")
    parser.add_argument("--accuracy", type=float, default=0.6, help="the simulated model's base accuracy (0.6)")
    parser.add_argument("--concurrency", type=int, default=32, help="problems in flight (default 32)")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.worlds = [w for w in args.worlds.split(",") if w]
    unknown = [w for w in args.worlds if w not in WORLDS]
    if unknown or not args.worlds:
        raise ConfigError(f"unknown world(s) {', '.join(unknown) or '(none)'}; known: {', '.join(WORLDS)}")
    for flag in ("seeds", "train", "val", "test", "epochs", "batch", "val_batch"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1")
    if not 0.0 < args.accuracy < 1.0:
        raise ConfigError(f"--accuracy must be between 0 and 1, got {args.accuracy}")
    source = "GSM8K from HYPERTEAM_DATA_DIR" if _has_gsm8k() else "generated word problems (GSM8K not found)"
    print(
        f"learn: textual backprop of ann-gsm8k, SIMULATED model sim:{args.accuracy} ({source}); "
        f"{args.seeds} seeds x {args.train} train / {args.val} val / {args.test} test, {args.epochs} epochs",
        flush=True,
    )
    results = run(args)
    print(table(results))
    print(f"({results['seconds']} s; SIMULATED: a check of the training mechanism, not a claim about real models)")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
