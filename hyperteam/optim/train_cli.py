"""``hyperteam train`` without ``--topology``: textual backprop of a team's prompts and aggregators.

Training problems are the first ``--train`` problems of the suite's train
split, validation problems the next ``--val`` (held out of training), and
test problems the first ``--test`` (default 200) of the test split: the
untrained and the trained team are scored on them after training, the only
numbers in the report that nothing was selected on. A suite without a train
split is carved the same way from its test split (train, then val, then
test), which the output says. The checkpoint is ``OUT.ckpt.json``; the report
goes beside ``OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals._html import endpoint_notes

DEFAULT_TEST = 200


def _refuse_topology_options(args: argparse.Namespace) -> None:
    if getattr(args, "token_penalty", None) is not None:
        raise ConfigError("--token-penalty applies to --topology training only")
    for flag in ("embedder", "alone_margin", "partners", "lr", "credit"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --topology training only")


def _problems(args: argparse.Namespace, n_test: int) -> tuple[list[Any], list[Any], list[Any], str]:
    from hyperteam.evals import datasets

    for flag, value in (("--train", args.train), ("--val", args.val)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    split = "train" if "train" in datasets.splits(args.suite) else "test"
    carved = args.train + args.val
    problems = datasets.load(args.suite, split=split, limit=carved + (n_test if split == "test" else 0))
    if len(problems) < carved:
        raise ConfigError(
            f"suite {args.suite!r} ({split} split) has {len(problems)} problems, "
            f"fewer than --train {args.train} + --val {args.val}"
        )
    if split == "test":
        test = problems[carved:]
    else:
        test = datasets.load(args.suite, split="test", limit=n_test) if n_test else []
    return problems[: args.train], problems[args.train : carved], test, split


def _ops(text: str | None) -> tuple[str, ...]:
    from hyperteam.optim.patch import OP_NAMES

    if not text:
        return OP_NAMES
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = [o for o in ops if o not in OP_NAMES]
    if unknown or not ops:
        raise ConfigError(f"--ops: unknown operation {unknown[0] if unknown else '(none)'!r}; choose from "
                          f"{','.join(OP_NAMES)}")  # fmt: skip
    return ops


def main(args: argparse.Namespace, *, default_model: Any) -> int:
    from hyperteam.models.spec import is_simulated
    from hyperteam.optim.cost import estimate
    from hyperteam.optim.report import write_report
    from hyperteam.optim.trainer import Trainer
    from hyperteam.topologies import LayeredTeam, load_team

    _refuse_topology_options(args)
    if args.epochs < 1 or args.batch < 1 or args.concurrency < 1:
        raise ConfigError("--epochs, --batch and --concurrency must be >= 1")
    n_test = DEFAULT_TEST if args.test is None else args.test
    if n_test < 0:
        raise ConfigError(f"--test must be >= 0, got {n_test}")
    ops = _ops(getattr(args, "ops", None))
    val_batch = getattr(args, "val_batch", None)
    if val_batch is not None and val_batch < 1:
        raise ConfigError(f"--val-batch must be >= 1, got {val_batch}")
    if args.out.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"--out must be a .json, .yaml or .yml file, got {str(args.out)!r}")
    team = load_team(args.team)
    if not isinstance(team, LayeredTeam):
        raise ConfigError(f"textual backprop trains layered teams; {args.team!r} is a {type(team).__name__}")
    train, val, test, split = _problems(args, n_test)
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
    if not test:
        say("note: no held-out test problems (--test 0): validation selected the patches, so it overstates the gain")
    elif len(test) < n_test:
        say(f"note: only {len(test)} test problems are left in suite {args.suite!r} for --test {n_test}")
    cost = estimate(team, train[0].question, train=len(train), val=len(val), batch=args.batch, val_batch=args.batch)
    say(cost.describe())
    structured = getattr(args, "structured_output", None) or "auto"
    trainer = Trainer(
        team, train=train, val=val, test=test, model=model, optimizer_model=optimizer_model, epochs=args.epochs,
        batch=args.batch, val_batch=val_batch, budget_tokens=args.budget_tokens, checkpoint=checkpoint,
        concurrency=args.concurrency, seed=args.seed, log=say, ops=ops,
        structured=None if structured == "none" else structured, baseline=getattr(args, "baseline", None),
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
    say(
        f"tokens: team {tokens['team']['total_tokens']:,}, optimizer {tokens['optimizer']['total_tokens']:,}, "
        f"held-out test {tokens['test']['total_tokens']:,}"
    )
    failures = report["failures"]
    if failures["failed"] or failures["fallbacks"]:
        say(f"failed problems: {failures['failed']} of {failures['of']} runs {failures['failed_by_kind']}; "
            f"fallbacks: {failures['fallbacks']}")  # fmt: skip
    for line in endpoint_notes(report["endpoints"]):
        say(f"note: {line}")
    print(f"trained team: {args.out}  report: {json_path}, {html_path}  layer pool: {pool_path}")
    return 0
