"""The report of one eval run: the numbers (``report.json``), a terminal table, and an HTML page.

``build_report`` is pure: rows and meta in, a JSON-ready dict out.
``write_report`` reads a run's store and writes ``report.json`` and
``report.html`` next to it; ``render_terminal`` turns the dict into text.

Example:
    >>> report = build_report([], {"suite": "demo", "team": "single", "simulated": True})
    >>> report["n"], report["accuracy"]["strict"]
    (0, None)
    >>> render_terminal(report).splitlines()[0]
    'SIMULATED MODEL: these numbers are not from a real LLM'
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperteam.agents._numbers import normalize_number
from hyperteam.agents.messages import REPLY_FLAGS, count_replies
from hyperteam.errors import ConfigError
from hyperteam.evals._html import (
    SIMULATED_BANNER,
    endpoint_notes,
    num,
    paired_text,
    pct,
    pct_ci,
    problems_text,
    render_html,
)
from hyperteam.evals.store import ResultRow, ResultStore

_Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def wilson_interval(correct: int, n: int, z: float = _Z95) -> list[float] | None:
    """The Wilson score interval of ``correct / n`` as ``[lo, hi]`` fractions; None when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty
    at 0% or 100%, which matters for the small runs people start with.

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
    """
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [_r(max(0.0, centre - half)), _r(min(1.0, centre + half))]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return _r(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def build_report(rows: Sequence[ResultRow], meta: dict[str, Any]) -> dict[str, Any]:
    """Summarises a run's rows into the report dict written as ``report.json``.

    A problem that failed (``error_kind`` set) counts as wrong: it stays in
    ``n`` and in the denominator of every accuracy, so failures lower the
    score instead of silently disappearing. With no rows, accuracies,
    intervals and latencies are None.

    ``per_agent`` scores each agent's last answer on a problem (its final
    opinion, when it speaks in several rounds) against the gold answer, over
    the problems where the agent ran; ``calls`` and ``tokens`` sum all its
    calls. ``per_layer`` scores each layer's fused answer (its fusion event);
    a layer with no fusion of its own (a hypergraph round) is scored by a
    majority vote of its agents' answers, and ``source`` says which.

    Args:
        rows: the run's results (``ResultStore.rows()``).
        meta: the store's meta (``suite``, ``team``, ``model``, ``simulated``, ``wall_s``, ...).

    Returns:
        A dict with a stable key order; floats are rounded to 6 digits.
    """
    n = len(rows)
    strict = sum(r.correct_strict for r in rows)
    flexible = sum(r.correct_flexible for r in rows)
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(r.completion_tokens for r in rows)
    calls = sum(r.calls for r in rows)
    kinds = Counter(r.error_kind for r in rows if r.error_kind)
    latencies = [r.latency_s for r in rows]
    return {
        "suite": meta.get("suite"),
        "split": meta.get("split"),
        "team": meta.get("team"),
        "model": meta.get("model"),
        "simulated": bool(meta.get("simulated", False)),
        "started_at": meta.get("started_at"),
        "concurrency": meta.get("concurrency"),
        "wall_s": _r(meta["wall_s"]) if meta.get("wall_s") is not None else None,
        "n": n,
        "planned": meta.get("n"),  # the suite's size: more than n when the run was stopped early
        "accuracy": {"strict": _ratio(strict, n), "flexible": _ratio(flexible, n)},
        "ci95": {"strict": wilson_interval(strict, n), "flexible": wilson_interval(flexible, n)},
        "correct": {"strict": strict, "flexible": flexible},
        "answered": {
            "strict": sum(r.answer_strict is not None for r in rows),
            "flexible": sum(r.answer_flexible is not None for r in rows),
        },
        "tokens": {
            "prompt": prompt,
            "completion": completion,
            "total": prompt + completion,
            "per_problem": _ratio(prompt + completion, n),
        },
        "calls": calls,
        "calls_per_problem": _ratio(calls, n),
        "errors": sum(kinds.values()),
        "errors_by_kind": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "mean": _ratio(sum(latencies), n),
            "max": _r(max(latencies)) if latencies else None,
        },
        "per_agent": _per_agent(rows),
        "per_layer": _per_layer(rows),
        "replies": _replies(rows),
        # Per endpoint: the in-flight limit found and its source, and what the server left out
        # (n ignored, no usage sent, ...), each said once.
        "endpoints": list(meta.get("endpoints") or []),
        "meta": dict(meta),
    }


def write_report(store_or_dir: ResultStore | str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Writes ``report.json`` and ``report.html`` for a run and returns the report dict.

    Args:
        store_or_dir: an open ``ResultStore``, a run directory holding
            ``results.sqlite``, or the path of a ``.sqlite`` file.
        out_dir: where to write; by default the directory of the store.

    Raises:
        ConfigError: no store at that path, or nowhere to write.
    """
    if isinstance(store_or_dir, ResultStore):
        rows, meta, path = store_or_dir.rows(), store_or_dir.meta(), store_or_dir.path
    else:
        path = str(store_path(store_or_dir))
        store = ResultStore(path)
        try:
            rows, meta = store.rows(), store.meta()
        finally:
            store.close()
    if out_dir is None:
        if path == ":memory:":
            raise ConfigError("write_report: an in-memory store needs an out_dir")
        out_dir = Path(path).parent
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(rows, meta)
    if path != ":memory:":
        from hyperteam.evals.baseline import baseline_summary

        baseline = baseline_summary(Path(path).parent, rows)
        if baseline is not None:
            report["baseline"] = baseline
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render_html(report, rows), encoding="utf-8")
    return report


def store_path(run: str | Path) -> Path:
    """The ``results.sqlite`` of a run directory (or ``run`` itself when it is a file).

    Raises:
        ConfigError: nothing there; checked first because opening a missing
            path would create an empty store.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "results.sqlite"
    if not path.is_file():
        raise ConfigError(f"no eval results at {path} (expected a run directory with results.sqlite)")
    return path


def render_terminal(report: dict[str, Any], *, color: bool = False, width: int = 100) -> str:
    """The report as terminal text: summary, errors, per-agent and per-layer tables.

    The first line is the simulated-model warning when the run was simulated.

    Args:
        report: a dict from ``build_report``.
        color: emit ANSI styles (pass ``sys.stdout.isatty()``).
        width: the width to lay the tables out in.
    """
    from rich.table import Table
    from rich.text import Text

    # Names come from team files and stores: Text keeps rich from reading "[...]" in them as markup.
    summary = Table(
        title=Text(f"{report.get('suite')} · {report.get('team')} · {report.get('model') or 'team models'}")
    )
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    acc, ci = report["accuracy"], report["ci95"]
    for kind in ("strict", "flexible"):
        summary.add_row(f"accuracy ({kind})", pct_ci(acc[kind], ci[kind]))
    lat, tokens = report["latency_s"], report["tokens"]
    summary.add_row("problems", problems_text(report))
    summary.add_row("tokens / problem", num(tokens["per_problem"], 0))
    summary.add_row("calls / problem", num(report["calls_per_problem"], 2))
    summary.add_row("latency p50 / p99", f"{num(lat['p50'], 2)} s / {num(lat['p99'], 2)} s")
    summary.add_row("errors", str(report["errors"]))
    if report.get("wall_s") is not None:
        summary.add_row("wall time", f"{report['wall_s']:.1f} s")
    tables: list[Table] = [summary]
    if report.get("baseline"):
        tables.append(_baseline_table(report))
    if report["errors_by_kind"]:
        errors = Table(title="errors by kind")
        errors.add_column("kind")
        errors.add_column("problems", justify="right")
        for kind, count in report["errors_by_kind"].items():
            errors.add_row(Text(kind), str(count))
        tables.append(errors)
    for key, title in (("per_agent", "per agent"), ("per_layer", "per layer")):
        if report[key]:
            tables.append(_breakdown(report[key], title, layer=key == "per_layer"))
    if report.get("replies", {}).get("per_agent"):
        tables.append(_replies_table(report["replies"]))
    head = SIMULATED_BANNER + "\n" if report.get("simulated") else ""
    notes = "".join(f"note: {line}\n" for line in endpoint_notes(report.get("endpoints")))
    base = report.get("baseline") or {}
    if base.get("equal_tokens") is False:
        notes += (
            f"note: the baseline spent {base['token_ratio']:.2f}x the team's tokens per problem (its pilot misjudged "
            "a sample's cost): NOT an equal-token comparison; compare accuracy per token\n"
        )
    return head + _to_text(tables, color=color, width=width) + notes


def _baseline_table(report: dict[str, Any]) -> Any:
    """The team against its equal-token baseline, and the paired difference on the same problems."""
    from rich.table import Table
    from rich.text import Text

    b = report["baseline"]
    ratio = b.get("token_ratio")
    match = "at the team's tokens" if ratio is None else f"{ratio:.2f}x the team's tokens"
    table = Table(title=Text(f"team vs {b['team']} with {b['samples']} samples ({match})"))
    for name in ("run", "n", "strict", "tokens / problem"):
        table.add_column(name, justify="left" if name == "run" else "right")
    table.add_row(Text(str(report.get("team"))), str(report["n"]), pct_ci(report["accuracy"]["strict"],
                  report["ci95"]["strict"]), num(report["tokens"]["per_problem"], 0))  # fmt: skip
    table.add_row(Text(f"{b['team']} x{b['samples']}"), str(b["n"]), pct_ci(b["accuracy"]["strict"],
                  b["ci95"]["strict"]), num(b["tokens"]["per_problem"], 0))  # fmt: skip
    if b.get("paired"):
        table.caption = paired_text(b["paired"], str(report.get("team")), f"{b['team']} x{b['samples']}")
    return table


def _breakdown(stats: dict[str, dict[str, Any]], title: str, *, layer: bool) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    table.add_column("layer" if layer else "agent")
    table.add_column("accuracy", justify="right")
    if layer:
        table.add_column("from")
    table.add_column("problems", justify="right")
    table.add_column("calls", justify="right")
    table.add_column("tokens", justify="right")
    for name, s in stats.items():
        cells = [Text(name), pct(s["accuracy"])] + ([s["source"]] if layer else [])
        table.add_row(*cells, str(s["problems"]), str(s["calls"]), str(s["tokens"]))
    return table


def _to_text(renderables: list[Any], *, color: bool, width: int) -> str:
    import io

    from rich.console import Console

    buf = io.StringIO()
    # An explicit file and force_terminal keep rich from probing the real stdout.
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color, color_system="auto")
    for item in renderables:
        console.print(item)
    return buf.getvalue()


def _per_agent(rows: Sequence[ResultRow]) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for row in rows:
        final: dict[str, str | None] = {}
        for ev in row.trace:
            if ev.get("kind") != "agent":
                continue
            name = ev.get("agent") or "?"  # a hand-made trace may leave it out, as with layers
            s = stats.setdefault(name, _blank())
            s["calls"] += _usage(ev, "calls")
            s["tokens"] += _usage(ev, "total_tokens")
            s["errors"] += ev.get("error") is not None
            final[name] = ev.get("answer")
        for agent, answer in final.items():
            _score(stats[agent], answer, row.gold)
    return {name: _finish(s) for name, s in stats.items()}


def _replies(rows: Sequence[ResultRow]) -> dict[str, Any]:
    """Empty, truncated (``finish_reason: length``) and fallback replies: in all, and per agent that had any."""
    per_agent: dict[str, dict[str, int]] = {}
    for row in rows:
        for agent, counts in count_replies(row.trace).items():
            total = per_agent.setdefault(agent, dict.fromkeys(REPLY_FLAGS, 0))
            for flag, k in counts.items():
                total[flag] += k
    totals = {flag: sum(c[flag] for c in per_agent.values()) for flag in REPLY_FLAGS}
    return {**totals, "per_agent": dict(sorted(per_agent.items()))}


def _replies_table(replies: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="replies to look at (empty, cut by max_tokens, fallbacks)")
    table.add_column("agent")
    for flag in REPLY_FLAGS:
        table.add_column(flag, justify="right")
    for agent, counts in replies["per_agent"].items():
        table.add_row(Text(agent), *(str(counts[flag]) for flag in REPLY_FLAGS))
    return table


def _per_layer(rows: Sequence[ResultRow]) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    agent_hits: Counter[str] = Counter()
    agent_events: Counter[str] = Counter()
    for row in rows:
        fused: dict[str, str | None] = {}
        votes: dict[str, dict[str, str | None]] = {}
        for ev in row.trace:
            layer = ev.get("layer", "?")
            s = stats.setdefault(layer, _blank())
            s["calls"] += _usage(ev, "calls")
            s["tokens"] += _usage(ev, "total_tokens")
            s["errors"] += ev.get("error") is not None
            if ev.get("kind") == "fusion":
                fused[layer] = ev.get("answer")  # the last fusion of a layer is its output
            else:
                votes.setdefault(layer, {})[ev.get("agent", "?")] = ev.get("answer")
                agent_events[layer] += 1
                agent_hits[layer] += _matches(ev.get("answer"), row.gold)
        for layer in dict.fromkeys([*votes, *fused]):
            if layer in fused:
                answer, stats[layer]["fused"] = fused[layer], True
            else:
                answer = _majority(list(votes[layer].values()))
            _score(stats[layer], answer, row.gold)
    out = {}
    for layer, s in stats.items():
        done = _finish(s)
        done["source"] = "fusion" if s.get("fused") else "vote"
        done["agent_accuracy"] = _ratio(agent_hits[layer], agent_events[layer])
        out[layer] = done
    return out


def _blank() -> dict[str, Any]:
    return {"problems": 0, "answered": 0, "correct": 0, "calls": 0, "tokens": 0, "errors": 0}


def _score(s: dict[str, Any], answer: str | None, gold: str) -> None:
    s["problems"] += 1
    s["answered"] += answer is not None
    s["correct"] += _matches(answer, gold)


def _finish(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("problems", "answered", "correct", "calls", "tokens", "errors")
    return {"accuracy": _ratio(s["correct"], s["problems"]), **{k: s[k] for k in keys}}


def _majority(answers: list[str | None]) -> str | None:
    counts = Counter(a for a in answers if a is not None)
    # most_common keeps first-seen order among ties, so the vote is deterministic.
    return counts.most_common(1)[0][0] if counts else None


def _matches(answer: str | None, gold: str) -> bool:
    if answer is None:
        return False
    if answer == gold:
        return True
    # Trace answers are normalised already; this guards against golds written as "1,000".
    canon = normalize_number(answer)
    return canon is not None and canon == normalize_number(gold)


def _usage(ev: dict[str, Any], key: str) -> int:
    return int((ev.get("usage") or {}).get(key) or 0)


def _ratio(a: float, b: float) -> float | None:
    return _r(a / b) if b else None


def _r(x: float) -> float:
    return round(float(x), 6)
