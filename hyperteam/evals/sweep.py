"""``hyperteam eval --sweep FILE``: several teams or settings, each in its own run folder.

The file (YAML or JSON) lists the runs; keys left out of a run come from the
file's top level, then from the command line::

    suite: gsm8k
    limit: 100
    runs:
      - {name: ann, team: ann-gsm8k, model: "sim:0.7"}
      - {name: hypergraph, team: hypergraph-gsm8k, model: "sim:0.7"}
      - {name: single-0.9, team: single, model: "sim:0.9"}

With ``--ray`` the runs are Ray tasks sharing the cluster; without, they run
one after another. ``--resume`` finishes every run of the sweep's ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hyperteam.errors import ConfigError

_KEYS = {"name", "team", "model", "suite", "split", "limit", "concurrency", "data", "question_field", "answer_field"}


def load_sweep(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs of a sweep file, each with every setting filled in.

    Raises:
        ConfigError: the file is missing, malformed, or names an unknown setting.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path} is not valid YAML/JSON: {exc}") from None
    if isinstance(data, list):
        data = {"runs": data}
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise ConfigError(f"sweep file {path}: expected a list of runs, or a mapping with a non-empty 'runs' list")
    defaults = {k: v for k, v in data.items() if k != "runs"}
    base = {k: getattr(args, k, None) for k in _KEYS if k != "name"}
    runs, names = [], set()
    for i, entry in enumerate(data["runs"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"sweep file {path}: run {i + 1} is not a mapping")
        for key in [*defaults, *entry]:
            if key not in _KEYS:
                raise ConfigError(f"sweep file {path}: unknown setting {key!r}; known: {', '.join(sorted(_KEYS))}")
        run = {**base, **{k: v for k, v in defaults.items() if v is not None}, **entry}
        if not run.get("suite") and run.get("data"):
            run["suite"] = Path(str(run["data"])).stem  # a file needs no made-up suite name
        if not run.get("suite"):
            raise ConfigError(f"sweep file {path}: run {i + 1} names no suite")
        name = str(run.get("name") or f"{run['suite']}-{run['team']}-{i + 1}")
        if not re.fullmatch(r"[\w.\-]+", name) or name in names:
            raise ConfigError(f"sweep file {path}: run name {name!r} must be unique letters, digits, '.', '-', '_'")
        names.add(name)
        run["name"] = name
        runs.append(run)
    return runs


def run_sweep(args: argparse.Namespace, *, default_model: Any) -> int:
    """Runs the sweep of ``args.sweep`` into ``args.out`` and prints one line per run."""
    from hyperteam.evals import cli as eval_cli
    from hyperteam.evals.store import ResultStore
    from hyperteam.topologies import load_team

    runs = load_sweep(args.sweep, args)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR: the sweep folder to finish")
    out = args.out or Path("runs") / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    prepared = []
    for run in runs:
        ns = argparse.Namespace(**{**vars(args), **run})
        ns.data = Path(ns.data) if ns.data else None
        team = load_team(ns.team)
        team.compile()
        model = default_model(ns.model)
        if args.ray is not None:
            from hyperteam.evals.distributed import check_model

            check_model(run["name"], model)
        folder = out / run["name"]
        if (folder / "results.sqlite").exists() and not args.resume:
            raise ConfigError(f"{folder} already holds a run: add --resume to finish the sweep, or another --out")
        folder.mkdir(parents=True, exist_ok=True)
        prepared.append((run, ns, team, eval_cli._problems(ns), model, folder))
    if args.ray is not None:
        from hyperteam.evals.distributed import RayRun, run_on_ray

        ray_runs = [
            RayRun(r["name"], team, problems, ResultStore(f / "results.sqlite"), model, ns.suite, args.resume,
                   ns.concurrency)
            for r, ns, team, problems, model, f in prepared
        ]  # fmt: skip
        total = sum(len(p[3]) for p in prepared)
        try:
            with eval_cli._ProgressBar(total, enabled=not args.no_progress and sys.stderr.isatty()) as progress:
                run_on_ray(ray_runs, address=args.ray, progress=progress)
        finally:
            for r in ray_runs:
                r.store.close()
    else:
        from hyperteam.evals.runner import evaluate

        for _run, ns, team, problems, model, folder in prepared:
            asyncio.run(
                evaluate(team, problems, concurrency=ns.concurrency, store=folder / "results.sqlite",
                         resume=args.resume, model=model, suite=ns.suite)
            )  # fmt: skip
    return _summary(prepared, out)


def _summary(prepared: list[Any], out: Path) -> int:
    from hyperteam.evals.report import write_report

    print(f"{'run':<24}{'team':<20}{'model':<28}{'n':>6}{'strict':>9}{'tokens/problem':>16}")
    for run, ns, _team, _problems, model, folder in prepared:
        report = write_report(folder, folder)
        acc = report["accuracy"]["strict"]
        tokens = report["tokens"]["per_problem"]
        print(f"{run['name']:<24}{ns.team!s:<20}{model!s:<28}{report['n']:>6}{acc:>9.3f}{tokens:>16.0f}")
    print(f"sweep folder: {out}  (one run folder each)")
    return 0
