"""The training report of a topology learner: JSON, and a small HTML page beside it.

Per step: mean utility, accuracy, tokens per query and hyperedges per query
of the sampled topologies; then the learned (``best``) topology's figures on
held-out problems, and, when asked, a comparison with fixed topologies on
the same agents. A report made with the simulated model says SIMULATED.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

_STEP_COLUMNS = ("step", "utility", "accuracy", "tokens_per_query", "hyperedges_per_query", "seconds")


def eval_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one ``ht.evaluate`` report that the comparison shows."""
    n = report.get("n") or 0
    prompt = report.get("tokens", {}).get("prompt", 0)
    accuracy = report.get("accuracy", {}).get("strict")
    return {
        "n": n,
        "accuracy": accuracy,
        "prompt_tokens_per_problem": round(prompt / n, 1) if n else None,
        # Right answers per 1000 prompt tokens: what a topology buys with what it makes agents read.
        "accuracy_per_1k_prompt_tokens": round(1000 * accuracy * n / prompt, 4)
        if prompt and accuracy is not None
        else None,
        "tokens_per_problem": report.get("tokens", {}).get("per_problem"),
        "calls_per_problem": report.get("calls_per_problem"),
        "errors": report.get("errors", 0),
    }


def write_report(report: dict[str, Any], json_path: Path) -> tuple[Path, Path]:
    """Writes ``report`` as JSON at ``json_path`` and as HTML beside it; returns both paths."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    html_path = json_path.with_suffix(".html")
    html_path.write_text(to_html(report), encoding="utf-8")
    return json_path, html_path


def comparison_table(rows: dict[str, dict[str, Any]]) -> str:
    """The comparison as fixed-width text, one line per topology."""
    lines = [
        f"{'topology':<24}{'accuracy':>10}{'prompt_tok/problem':>20}{'acc/1k_prompt_tok':>19}{'tok/problem':>13}"
        f"{'calls/problem':>15}"
    ]
    for name, r in rows.items():
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        per = r.get("accuracy_per_1k_prompt_tokens")
        per_text = "-" if per is None else f"{per:.4f}"
        lines.append(
            f"{name:<24}{acc:>10}{r['prompt_tokens_per_problem'] or 0:>20.1f}{per_text:>19}"
            f"{r.get('tokens_per_problem') or 0:>13.1f}{r['calls_per_problem'] or 0:>15.1f}"
        )
    return "\n".join(lines)


def to_html(report: dict[str, Any]) -> str:
    """A self-contained page: the summary, the comparison and the per-step table."""
    esc = html.escape
    title = f"Topology training: {report.get('learner')} on {report.get('suite')}"
    banner = (
        "<p style='color:#b00;font-weight:bold'>SIMULATED: made with the simulated model; not real LLM results.</p>"
        if report.get("simulated")
        else ""
    )

    def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    parts = [f"<h1>{esc(title)}</h1>", banner]
    summary = {k: v for k, v in report.items() if not isinstance(v, (dict, list))}
    parts.append(table([summary], list(summary)))
    if report.get("validation"):
        parts += [
            "<h2>Learned topology on validation problems</h2>",
            table([report["validation"]], list(report["validation"])),
        ]
    if report.get("topologies"):
        t = report["topologies"]
        parts += [
            "<h2>Learned topologies on the test problems</h2>",
            table([{k: v for k, v in t.items() if k != "per_problem"}], [k for k in t if k != "per_problem"]),
        ]
    if report.get("comparison"):
        rows = [{"topology": k, **v} for k, v in report["comparison"].items()]
        parts += ["<h2>Comparison on test problems</h2>", table(rows, list(rows[0]))]
    parts += ["<h2>Training steps</h2>", table(report.get("steps", []), list(_STEP_COLUMNS))]
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    return f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>{''.join(parts)}\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
