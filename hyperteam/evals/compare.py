"""Comparing eval runs side by side: ``hyperteam eval compare DIR1 DIR2 ... [--html FILE] [--json FILE]``.

Each run directory is read through its ``report.json``; a run whose report
was never written (a killed run) is summarised from its ``results.sqlite``.

Example:
    >>> import tempfile
    >>> from hyperteam.evals.store import ResultStore
    >>> run = tempfile.mkdtemp()
    >>> ResultStore(f"{run}/results.sqlite").set_meta(suite="demo", team="single", simulated=True)
    >>> [r["n"] for r in compare([run])]
    [0]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals._html import num, pct_ci, render_compare_html
from hyperteam.evals.baseline import paired_on_shared
from hyperteam.evals.report import SIMULATED_BANNER, build_report, paired_text, store_path
from hyperteam.evals.store import ResultRow, ResultStore


def compare(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Loads the report of each run directory, in the order given.

    Each returned dict is the run's report with ``run_dir`` added. Every run
    after the first also gets ``paired``: itself minus the first run on the
    problems both hold (same id and question), with the paired 95% interval
    and McNemar's exact p (see ``hyperteam.evals.stats``); None when they
    share no problem or a run's ``results.sqlite`` is gone.

    Raises:
        ConfigError: a directory is missing, or holds neither ``report.json``
            nor ``results.sqlite``, or its report is not valid JSON.
    """
    if not dirs:
        raise ConfigError("compare: give at least one run directory")
    reports = []
    for d in dirs:
        run = Path(d)
        if not run.is_dir():
            raise ConfigError(f"compare: no run directory at {run}")
        json_path = run / "report.json"
        if json_path.is_file():
            try:
                report = json.loads(json_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConfigError(f"compare: {json_path} is not a valid report: {exc}") from None
            if not isinstance(report, dict) or "accuracy" not in report:
                raise ConfigError(f"compare: {json_path} is not a hyperteam eval report")
        else:
            try:
                path = store_path(run)
            except ConfigError:
                raise ConfigError(f"compare: {run} has neither report.json nor results.sqlite") from None
            store = ResultStore(path)
            try:
                report = build_report(store.rows(), store.meta())
            finally:
                store.close()
        reports.append({"run_dir": str(run), **report})
    rows = [_rows(Path(d)) for d in dirs]
    for report, mine in zip(reports[1:], rows[1:], strict=True):
        paired = paired_on_shared(rows[0], mine) if rows[0] and mine else None
        report["paired"] = None if paired is None else {"against": reports[0]["run_dir"], **paired}
    return reports


def _rows(run: Path) -> list[ResultRow]:
    path = run / "results.sqlite" if run.is_dir() else run
    if not path.is_file():
        return []
    store = ResultStore(path)
    try:
        return store.rows()
    finally:
        store.close()


def render_compare(reports: Sequence[dict[str, Any]], *, color: bool = False, width: int = 160) -> str:
    """A side-by-side table of runs; the first line warns when any run was simulated.

    Args:
        reports: dicts from ``compare``.
        color: emit ANSI styles (pass ``sys.stdout.isatty()``).
        width: the width to lay the table out in.
    """
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="eval runs")
    for name in ("run", "suite", "team", "model", "n", "strict", "flexible", "tok/prob", "calls/prob", "p50 s"):
        table.add_column(name, justify="left" if name in ("run", "suite", "team", "model") else "right")
    table.add_column("errors", justify="right")
    table.add_column("sim", justify="center")
    for r in reports:
        acc, ci = r["accuracy"], r["ci95"]
        table.add_row(
            # Text, not str: a "[" in a path or name is not rich markup.
            Text(str(r.get("run_dir", ""))),
            Text(str(r.get("suite"))),
            Text(str(r.get("team"))),
            Text(str(r.get("model") or "-")),
            str(r["n"]),
            pct_ci(acc["strict"], ci["strict"]),
            pct_ci(acc["flexible"], ci["flexible"]),
            num(r["tokens"]["per_problem"], 0),
            num(r["calls_per_problem"], 2),
            num(r["latency_s"]["p50"], 2),
            str(r["errors"]),
            "SIM" if r.get("simulated") else "",
        )
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=color, no_color=not color).print(table)
    simulated = [str(r.get("run_dir", "")) for r in reports if r.get("simulated")]
    head = f"{SIMULATED_BANNER} (runs: {', '.join(simulated)})\n" if simulated else ""
    return head + buf.getvalue() + "".join(_paired_line(reports[0], r) + "\n" for r in reports[1:])


def _paired_line(first: dict[str, Any], other: dict[str, Any]) -> str:
    a, b = str(first.get("run_dir")), str(other.get("run_dir"))
    if other.get("paired") is None:
        return f"{b} - {a}: no problems in common (or no results.sqlite): no paired comparison"
    return "paired: " + paired_text(other["paired"], a, b)


def write_compare_html(reports: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Writes one self-contained HTML page with the table and the accuracy-vs-tokens plot across runs."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_compare_html(reports), encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``eval compare``'s arguments to ``parser``."""
    parser.add_argument(
        "dirs", nargs="+", metavar="DIR", help="run directories (each with report.json or results.sqlite)"
    )
    parser.add_argument("--html", metavar="FILE", help="also write a comparison page with the accuracy-vs-tokens plot")
    parser.add_argument("--json", metavar="FILE", help="also write the reports, one per run, as a JSON list")


def main(args: argparse.Namespace) -> int:
    """Prints the comparison table; writes ``--html`` and ``--json`` when given.

    Raises:
        ConfigError: a run directory or its report is missing or unreadable.
    """
    reports = compare(args.dirs)
    # Files first, so that a failure leaves no table claiming success.
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(reports, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.html:
        write_compare_html(reports, args.html)
    sys.stdout.write(render_compare(reports, color=sys.stdout.isatty()))
    for name, path in (("json", args.json), ("html", args.html)):
        if path:
            print(f"wrote {name} to {path}", file=sys.stderr)
    return 0
