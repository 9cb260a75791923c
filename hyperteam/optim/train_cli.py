"""``hyperteam train`` without ``--topology``: textual backprop of a team's prompts and aggregators.

Training problems are the first ``--train`` problems of the suite's train
split, validation problems the next ``--val`` (held out of training; the
test split stays untouched for ``hyperteam eval``). A suite without a train
split is carved the same way from its test split, which the output says.
The checkpoint is ``OUT.ckpt.json``; the report goes beside ``OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from typing import Any

from hyperteam.errors import ConfigError


def _refuse_topology_options(args: argparse.Namespace) -> None:
    if getattr(args, "token_penalty", None) is not None:
        raise ConfigError("--token-penalty applies to --topology training only")
    if getattr(args, "test", 0):
        raise ConfigError("--test applies to --topology training only (evaluate a trained team with hyperteam eval)")


def _problems(args: argparse.Namespace) -> tuple[list[Any], list[Any], str]:
    from hyperteam.evals import datasets

    for flag, value in (("--train", args.train), ("--val", args.val)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    split = "train" if "train" in datasets.splits(args.suite) else "test"
    problems = datasets.load(args.suite, split=split, limit=args.train + args.val)
    if len(problems) < args.train + args.val:
        raise ConfigError(
            f"suite {args.suite!r} ({split} split) has {len(problems)} problems, "
            f"fewer than --train {args.train} + --val {args.val}"
        )
    return problems[: args.train], problems[args.train :], split


def main(args: argparse.Namespace, *, default_model: Any) -> int:
    from hyperteam.models.spec import is_simulated
    from hyperteam.optim.cost import estimate
    from hyperteam.optim.report import write_report
    from hyperteam.optim.trainer import Trainer
    from hyperteam.topologies import LayeredTeam, load_team

    _refuse_topology_options(args)
    if args.epochs < 1 or args.batch < 1 or args.concurrency < 1:
        raise ConfigError("--epochs, --batch and --concurrency must be >= 1")
    if args.out.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"--out must be a .json, .yaml or .yml file, got {str(args.out)!r}")
    team = load_team(args.team)
    if not isinstance(team, LayeredTeam):
        raise ConfigError(f"textual backprop trains layered teams; {args.team!r} is a {type(team).__name__}")
    train, val, split = _problems(args)
    model = default_model(args.model)
    optimizer_model = args.optimizer_model or model
    checkpoint = args.out.with_name(args.out.name + ".ckpt.json")
    if args.fresh and checkpoint.exists():
        checkpoint.unlink()
    say = functools.partial(print, flush=True)  # progress lines, seen as they happen
    if split == "test":
        say(f"note: suite {args.suite!r} has no train split: training and validation come from its test split")
    if is_simulated(model, optimizer_model):
        say("SIMULATED: the team and/or optimizer model is the simulated model; scores and patches are not real")
    cost = estimate(team, train[0].question, train=len(train), val=len(val), batch=args.batch, val_batch=args.batch)
    say(cost.describe())
    trainer = Trainer(
        team, train=train, val=val, model=model, optimizer_model=optimizer_model, epochs=args.epochs,
        batch=args.batch, budget_tokens=args.budget_tokens, checkpoint=checkpoint,
        concurrency=args.concurrency, seed=args.seed, log=say, structured=getattr(args, "structured_output", None),
    )  # fmt: skip
    report = asyncio.run(trainer.fit())
    report["suite"], report["estimate"] = args.suite, cost.to_dict()
    trainer.team.save(args.out)
    json_path, html_path = write_report(report, args.out.parent)
    pool_path = args.out.with_name(args.out.stem + ".pool.json")
    trainer.pool.save(pool_path)  # accepted layer variants, for ht.optim.assemble
    marker = " (SIMULATED)" if report["simulated"] else ""
    say(
        f"validation {report['initial_val']:.3f} -> {report['final_val']:.3f}{marker}; "
        f"{report['steps_accepted']} of {report['steps_run']} steps accepted; stopped: {report['stopped']}"
    )
    tokens = report["tokens"]
    say(f"tokens: team {tokens['team']['total_tokens']:,}, optimizer {tokens['optimizer']['total_tokens']:,}")
    print(f"trained team: {args.out}  report: {json_path}, {html_path}  layer pool: {pool_path}")
    return 0
