"""``hyperteam train --topology {hyperagent,gdesigner,agentprune}``: learn who talks to whom.

The team gives the agents, rounds and fusion (a hypergraph or learned team;
``hyperagent-gsm8k`` starts from its seeded generator). Training problems
are the first ``--train`` of the suite's train split, validation the next
``--val``; after training, the learned topology is evaluated on the
validation problems and, with ``--test N``, beside the ``complete`` and
``chain`` topologies of the same agents on the first N test problems (and,
with ``--baseline self-consistency``, beside self-consistency with as many
samples as match the learned topology's tokens per problem).

Writes ``--out`` (the topology, JSON), ``OUT.team.yaml`` (a team spec that
uses it: ``topology: {learned: OUT}``), and the report ``OUT.report.json``
and ``.html``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
from typing import Any

import yaml

from hyperteam.errors import ConfigError

DEFAULT_TOKEN_PENALTY = 1e-5


def _check(args: argparse.Namespace) -> None:
    if args.optimizer_model is not None:
        raise ConfigError("--optimizer-model applies to textual backprop only, not --topology training")
    if args.budget_tokens is not None:
        raise ConfigError("--budget-tokens applies to textual backprop only, not --topology training")
    if getattr(args, "structured_output", None) is not None:
        raise ConfigError("--structured-output applies to textual backprop only, not --topology training")
    if getattr(args, "baseline", None) is not None and not getattr(args, "test", 0):
        raise ConfigError("--baseline is scored on the held-out test problems: give some (--test N)")
    for flag, value, least in (
        ("--epochs", args.epochs, 1), ("--batch", args.batch, 1), ("--concurrency", args.concurrency, 1),
        ("--train", args.train, 1), ("--val", args.val, 0), ("--samples-per-query", args.samples_per_query, 2),
        ("--test", getattr(args, "test", 0) or 0, 0),
    ):  # fmt: skip
        if value < least:
            raise ConfigError(f"{flag} must be >= {least}, got {value}")
    if args.token_penalty is not None and args.token_penalty < 0:
        raise ConfigError(f"--token-penalty must be >= 0, got {args.token_penalty}")
    lr = getattr(args, "lr", None)
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be > 0, got {lr}")
    margin = getattr(args, "alone_margin", None)
    if margin is not None and (args.topology != "hyperagent" or not margin >= 0):
        raise ConfigError(f"--alone-margin applies to --topology hyperagent and must be >= 0, got {margin}")
    partners = getattr(args, "partners", None)
    if partners is not None and (args.topology != "hyperagent" or partners < 1):
        raise ConfigError(f"--partners applies to --topology hyperagent and must be >= 1, got {partners}")
    if args.out.suffix.lower() != ".json":
        raise ConfigError(f"--out must be a .json file (the learned topology), got {str(args.out)!r}")


def _problems(suite: str, train: int, val: int) -> tuple[list[Any], list[Any], str]:
    from hyperteam.evals import datasets

    split = "train" if "train" in datasets.splits(suite) else "test"
    problems = datasets.load(suite, split=split, limit=train + val)
    if len(problems) < train + val:
        raise ConfigError(
            f"suite {suite!r} ({split} split) has {len(problems)} problems, fewer than --train {train} + --val {val}"
        )
    return problems[:train], problems[train:], split


def _learner(
    team: Any, kind: str, seed: int, *, embedder: str | None = None, margin: float | None = None, k: int | None = None
) -> Any:
    """The learner to train: the team's own generator (trained or seeded) when it is of this kind and
    no other embedder is asked for; otherwise a fresh one, warm-started on the anchor chain."""
    from hyperteam.topologies.embed import embedder_from_spec
    from hyperteam.topologies.learned import LEARNERS
    from hyperteam.topologies.learned.team import LearnedHypergraphTeam

    wanted = embedder_from_spec(embedder) if embedder else None
    if isinstance(team, LearnedHypergraphTeam) and team.generator.learner == kind:
        generator = team.generator
        if wanted is None or wanted.config() == generator.embedder.config():
            if margin is not None:
                generator.alone_margin = float(margin)
            if k is not None:  # k only cuts the sampled and best topologies: no parameter depends on it
                generator.k = k
            return generator
    options: dict[str, Any] = {"alone_margin": margin} if margin is not None else {}
    if k is not None:
        options["k"] = k
    learner = LEARNERS[kind](team.agents, wanted, seed=seed, **options)
    if hasattr(learner, "anchor_init"):
        # Untrained affinities sit near 0.5 for every pair, so the first topologies would be arbitrary.
        learner.anchor_init()
    return learner


def topologies(learner: Any, problems: list[Any]) -> dict[str, Any]:
    """The learned topology of each problem: its hyperedges, the agents that work alone, and the count
    of problems that got no hyperedge at all (every agent on its own)."""
    alone = getattr(learner, "working_alone", None)
    rows = []
    for p in problems:
        edges = learner.best(p.question)
        rows.append({"id": p.id, "hyperedges": edges, "working_alone": alone(p.question) if alone else None})
    sizes = [len(r["hyperedges"]) for r in rows]
    return {
        "problems": len(rows),
        "empty": sum(1 for n in sizes if n == 0),
        "hyperedges_per_problem": round(sum(sizes) / len(sizes), 3) if sizes else None,
        "working_alone_per_problem": (
            round(sum(len(r["working_alone"]) for r in rows) / len(rows), 3) if rows and alone else None
        ),
        "alone_margin": getattr(learner, "alone_margin", None),
        "per_problem": rows,
    }


def baselines(team: Any) -> dict[str, Any]:
    """The fixed topologies on the team's agents: complete (one hyperedge) and chain (adjacent pairs)."""
    from hyperteam.topologies import graphs
    from hyperteam.topologies.hypergraph import HypergraphTeam

    names = [a.name for a in team.agents]
    common = {"rounds": team.rounds, "fusion": team.fusion, "schedule": team.schedule}
    return {
        "complete": HypergraphTeam(team.agents, [names], name="complete", **common),
        "chain": HypergraphTeam.from_graph(team.agents, graphs.chain(names), name="chain", **common),
    }


def _evaluate(team: Any, problems: list[Any], model: Any, concurrency: int) -> tuple[dict[str, Any], list[bool]]:
    """The comparison's figures of ``team`` on ``problems``, and whether each was right (in problem order,
    for the paired tests)."""
    from hyperteam.evals.runner import evaluate
    from hyperteam.evals.store import ResultStore
    from hyperteam.optim.topology.report import eval_summary

    store = ResultStore(":memory:")
    try:
        summary = eval_summary(asyncio.run(evaluate(team, problems, model=model, concurrency=concurrency, store=store)))
        right = {row.problem_id: row.correct_strict for row in store.rows()}
    finally:
        store.close()
    return summary, [right.get(p.id, False) for p in problems]


def paired(correct: dict[str, list[bool]], learned: str) -> dict[str, dict[str, Any]]:
    """The learned topology against each other topology on the same problems: accuracy difference
    (learned − other), its paired 95% interval and McNemar's exact p."""
    from hyperteam.evals.stats import compare_paired

    mine = correct[learned]
    return {name: compare_paired(other, mine).as_dict() for name, other in correct.items() if name != learned}


def main(args: argparse.Namespace, *, default_model: Any) -> int:
    """Runs ``hyperteam train --topology``; returns the exit code."""
    _check(args)
    from hyperteam.topologies.learned._torch import require_torch

    require_torch().set_num_threads(1)  # the generator is tiny: threads only add overhead
    from hyperteam.models.spec import is_simulated
    from hyperteam.optim.topology.report import comparison_table, write_report
    from hyperteam.topologies import load_team
    from hyperteam.topologies.learned.team import LearnedHypergraphTeam

    team = load_team(args.team)
    if not hasattr(team, "rounds") or not getattr(team, "agents", None):
        raise ConfigError(
            f"--topology needs a hypergraph or learned team (agents and rounds); {args.team!r} is not one"
        )
    train, val, split = _problems(args.suite, args.train, args.val)
    model = default_model(args.model)
    simulated = is_simulated(model, os.environ.get("HYPERTEAM_MODEL"))
    say = functools.partial(print, flush=True)  # progress lines, seen as they happen
    if split == "test":
        say(f"note: suite {args.suite!r} has no train split: training and validation come from its test split")
    if simulated:
        say("SIMULATED: the agents run on the simulated model; accuracies and tokens are not real")
    penalty = DEFAULT_TOKEN_PENALTY if args.token_penalty is None else args.token_penalty
    learner = _learner(
        team,
        args.topology,
        args.seed,
        embedder=getattr(args, "embedder", None),
        margin=getattr(args, "alone_margin", None),
        k=getattr(args, "partners", None),
    )
    say(
        f"training {args.topology} on {len(train)} problems: {args.epochs} epoch(s), batch {args.batch}, "
        f"{args.samples_per_query} topologies per problem, λ={penalty:g} per token, "
        f"embedder {learner.embedder.config()['kind']}"
    )

    def on_step(r: dict[str, Any]) -> None:
        say(
            f"step {r['step']}: utility {r['utility']:.3f}, accuracy {r['accuracy']:.3f}, "
            f"tokens/query {r['tokens_per_query']:.0f}, hyperedges/query {r['hyperedges_per_query']:.2f}"
        )

    from hyperteam.optim.topology.reinforce import fit

    steps = fit(
        learner, train, samples_per_query=args.samples_per_query, token_penalty=penalty, epochs=args.epochs,
        batch=args.batch, model=model, rounds=team.rounds, fusion=team.fusion, concurrency=args.concurrency,
        lr=getattr(args, "lr", None) or 0.003, credit=getattr(args, "credit", None) or "team",
        on_step=on_step,
    )  # fmt: skip
    learner.save(args.out)
    spec_path = args.out.with_name(args.out.stem + ".team.yaml")
    spec = {
        "name": f"{args.topology}-{team.name}",
        "topology": {"learned": args.out.name},
        "rounds": team.rounds,
        "fusion": team.fusion,
        "schedule": team.schedule,
    }
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    learned = LearnedHypergraphTeam.model_validate({**spec, "topology": {"learned": str(args.out)}})
    report: dict[str, Any] = {
        "learner": args.topology, "team": team.name, "suite": args.suite, "model": str(model),
        "simulated": simulated, "train": len(train), "val": len(val), "epochs": args.epochs,
        "samples_per_query": args.samples_per_query, "token_penalty": penalty, "embedder": learner.embedder.config(),
        "alone_margin": getattr(learner, "alone_margin", None), "credit": getattr(args, "credit", None) or "team",
        "steps": steps,
    }  # fmt: skip
    from hyperteam.topologies.adapt import OnlineAdaptation

    if OnlineAdaptation(learned):
        # The team fuses with `adaptive`: it learns whom to trust on the training problems too, on the
        # learned topology, online (each problem answered before it is learned from), into the spec.
        from hyperteam.evals.runner import evaluate

        online = asyncio.run(evaluate(learned, train, model=model, concurrency=args.concurrency, adapt=True))
        spec["fusion"] = learned.fusion
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        report["adaptive_fusion"] = {"problems": len(train), "online_accuracy": online["accuracy"]["strict"]}
        say(f"adaptive fusion trained online on {len(train)} problems: accuracy {online['accuracy']['strict']:.3f}")
    if val:
        report["validation"], _ = _evaluate(learned, val, model, args.concurrency)
        v = report["validation"]
        tokens = v["prompt_tokens_per_problem"]
        say(f"validation ({len(val)} problems): accuracy {v['accuracy']:.3f}, prompt tokens/problem {tokens}")
    if getattr(args, "test", 0):
        from hyperteam.evals import datasets

        test = datasets.load(args.suite, split="test", limit=args.test)
        report["topologies"] = topologies(learner, test)
        t = report["topologies"]
        say(
            f"learned topologies on {t['problems']} test problems: {t['empty']} empty, "
            f"{t['hyperedges_per_problem']} hyperedges and {t['working_alone_per_problem']} agents working alone "
            f"per problem (alone margin {t['alone_margin']})"
        )
        learned_row = f"{args.topology} (learned)"
        untrained = LearnedHypergraphTeam.model_validate(
            {**spec, "agents": team.agents,
             "topology": {"learner": args.topology, "seed": args.seed, "embedder": getattr(args, "embedder", None),
                          **({"k": args.partners} if getattr(args, "partners", None) else {})}}
        )  # fmt: skip
        teams = {learned_row: learned, f"{args.topology} (untrained)": untrained, **baselines(learned)}
        results = {name: _evaluate(each, test, model, args.concurrency) for name, each in teams.items()}
        if getattr(args, "baseline", None):  # self-consistency at the learned topology's tokens per problem
            from hyperteam.evals.baseline import matched_self_consistency, token_match
            from hyperteam.topologies.builtin import self_consistency

            tokens = results[learned_row][0]["tokens_per_problem"] or 0.0
            k, _ = asyncio.run(matched_self_consistency(tokens, test, model=model, concurrency=args.concurrency))
            results[f"self-consistency x{k}"] = sc = _evaluate(self_consistency(k), test, model, args.concurrency)
            report["self_consistency"] = {"samples": k, **token_match(sc[0]["tokens_per_problem"] or 0.0, tokens)}
        report["comparison"] = {name: summary for name, (summary, _) in results.items()}
        report["paired"] = paired({name: correct for name, (_, correct) in results.items()}, learned_row)
        report["test"] = len(test)
        say(f"test ({len(test)} problems, same agents, rounds and fusion){' SIMULATED' if simulated else ''}:")
        say(comparison_table(report["comparison"]))
        for name, c in report["paired"].items():
            lo, hi = c["ci95"]
            say(
                f"{learned_row} - {name}: accuracy {c['diff']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}), "
                f"McNemar p = {c['mcnemar_p']:.3g} ({c['only_b']} problems right only with the learned, "
                f"{c['only_a']} only with {name})"
            )
        sc_match = report.get("self_consistency") or {}
        if sc_match.get("equal_tokens") is False:
            from hyperteam.evals.baseline import MAX_SAMPLES

            say(
                f"note: self-consistency x{sc_match['samples']} spent {sc_match['token_ratio']:.2f}x the learned "
                f"topology's tokens per problem (at most {MAX_SAMPLES} samples; its pilot may misjudge a sample's "
                "cost): NOT an equal-token comparison"
            )
    json_path, html_path = write_report(report, args.out.with_name(args.out.stem + ".report.json"))
    print(f"learned topology: {args.out}  team spec: {spec_path}  report: {json_path}, {html_path}")
    return 0
