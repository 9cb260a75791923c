"""``hyperteam eval``: run a team over a suite into a run folder, with a progress bar and a report."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "suite",
        nargs="?",
        help="gsm8k, gsm-hard, multiarith, demo, generated; with --data, a name (default: the file's stem)",
    )
    parser.add_argument("--team", default="ann-gsm8k", help="team file or built-in name (default ann-gsm8k)")
    parser.add_argument("--model", help="model spec for agents that name none (default: HYPERTEAM_BASE_URL, else sim)")
    parser.add_argument("--split", default="test", help="suite split (default test)")
    parser.add_argument("--limit", type=int, help="only the first N problems")
    parser.add_argument("--concurrency", type=int, default=64, help="problems and requests in flight (default 64)")
    parser.add_argument("--out", type=Path, help="run folder (default runs/SUITE-TEAM-TIME)")
    parser.add_argument("--resume", action="store_true", help="finish the run in --out: only missing problems")
    parser.add_argument("--data", type=Path, help="a JSON/JSONL file of problems instead of a named suite")
    parser.add_argument("--question-field", default="question", help="with --data: the question field")
    parser.add_argument("--answer-field", default="answer", help="with --data: the answer field")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="shard the problems over a Ray cluster: local (default) or its address; --concurrency is per worker",
    )
    parser.add_argument("--sweep", type=Path, metavar="FILE", help="run the teams/settings listed in FILE (YAML/JSON)")
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="train the team's 'adaptive' fusions online: each problem is scored, then learned from; "
        "the adapted team is saved as OUT/team.adapted.json",
    )
    parser.add_argument(
        "--baseline",
        choices=["self-consistency"],
        help="also run this baseline with as many samples as match the team's tokens per problem (in OUT/baseline)",
    )


def _problems(args: argparse.Namespace) -> list[Any]:
    from hyperteam.evals import datasets

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.data is not None:
        return datasets.load_file(
            args.data, question_field=args.question_field, answer_field=args.answer_field, limit=args.limit
        )
    return datasets.load(args.suite, split=args.split, limit=args.limit)


def main(args: argparse.Namespace, *, default_model: Any) -> int:
    from hyperteam.evals.runner import evaluate
    from hyperteam.models.runtime import Runtime
    from hyperteam.topologies import load_team

    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.sweep is not None:
        if args.baseline is not None or getattr(args, "adapt", False):
            raise ConfigError("--baseline and --adapt are for one run: leave them out of --sweep")
        from hyperteam.evals.sweep import run_sweep

        return run_sweep(args, default_model=default_model)
    if args.suite is None and args.data is not None:
        args.suite = args.data.stem  # a file needs no made-up suite name
    if args.suite is None:
        raise ConfigError(
            "name a SUITE (gsm8k, gsm-hard, multiarith, demo, generated, ...), or give --data FILE or --sweep FILE"
        )
    if args.baseline is not None and args.ray is not None:
        raise ConfigError("--baseline runs in this process: leave out --ray")
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR: the run folder to finish")
    if getattr(args, "adapt", False) and args.ray is not None:
        raise ConfigError("--adapt learns in order, in this process: leave out --ray")
    team = load_team(args.team)
    problems = _problems(args)
    model = default_model(args.model)
    if args.ray is not None:
        from hyperteam.evals.distributed import check_model

        check_model(args.suite, model)
    out = args.out or Path("runs") / f"{args.suite}-{team.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    store = out / "results.sqlite"
    if store.exists() and not args.resume:
        raise ConfigError(f"{out} already holds a run: add --resume to finish it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    team.compile()
    if args.ray is not None:
        from hyperteam.evals.distributed import RayRun, run_on_ray
        from hyperteam.evals.store import ResultStore

        db = ResultStore(store)
        run = RayRun(args.suite, team, problems, db, model, args.suite, args.resume, args.concurrency)
        try:
            with _ProgressBar(len(problems), enabled=not args.no_progress and sys.stderr.isatty()) as progress:
                run_on_ray([run], address=args.ray, progress=progress)
        finally:
            db.close()
        return _finish(out)
    show = not args.no_progress and sys.stderr.isatty()

    async def team_then_baseline() -> None:
        # One runtime for both: one model server started (llamacpp:, vllm:), one capacity learned.
        async with Runtime(max_concurrency=args.concurrency) as runtime:
            with _ProgressBar(len(problems), enabled=show) as progress:
                await evaluate(team, problems, concurrency=args.concurrency, store=store, resume=args.resume,
                               model=model, runtime=runtime, suite=args.suite, progress=progress,
                               adapt=getattr(args, "adapt", False))  # fmt: skip
            if getattr(args, "adapt", False):  # kept before the baseline runs, whatever becomes of it
                team.save(out / "team.adapted.json")
                print(f"adapted team (its learned fusion state): {out / 'team.adapted.json'}")
            if args.baseline is not None:
                from hyperteam.evals.baseline import run_baseline

                with _ProgressBar(len(problems), enabled=show) as progress:
                    await run_baseline(args.baseline, problems, run_dir=out, model=model, runtime=runtime,
                                       suite=args.suite, concurrency=args.concurrency, resume=args.resume,
                                       progress=progress)  # fmt: skip

    asyncio.run(team_then_baseline())
    return _finish(out)


def _finish(out: Path) -> int:
    from hyperteam.evals.report import render_terminal, write_report

    report = write_report(out, out)
    print(render_terminal(report))
    print(f"run folder: {out}  (results.sqlite, report.json, report.html)")
    return 0


class _ProgressBar:
    """A rich progress bar on stderr: done, accuracy so far, tokens, errors, rate."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            refresh_per_second=4,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("eval", total=self.total, stats="")
        return self.update

    def update(self, p: Any) -> None:
        acc = p.correct / p.done if p.done else 0.0
        stats = f"acc {acc:.3f}  tokens {p.tokens}  errors {p.errors}  {p.rate:.1f}/s"
        self._bar.update(self._task, completed=p.done, stats=stats)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
