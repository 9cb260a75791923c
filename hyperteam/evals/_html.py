"""Self-contained HTML pages for eval reports: inline CSS, plots as base64 PNG, nothing fetched.

Everything that comes from a store (questions, model outputs, names) is
untrusted text and goes through ``html.escape``; a Content-Security-Policy
that allows no scripts and only ``data:`` images backs that up. Plots are
drawn with matplotlib's object API on the Agg canvas, without pyplot, so
drawing changes no global backend state; without matplotlib the page is
written with a note in place of the plots.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from hyperteam.evals.store import ResultRow

SIMULATED_BANNER = "SIMULATED MODEL: these numbers are not from a real LLM"
WRONG_SHOWN = 50
_QUESTION_CHARS = 240
_OUTPUT_CHARS = 4000
_NO_MPL = "Plots need matplotlib, which is not installed: pip install 'hyperteam[viz]'."

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid #d8dce3}
.sub{color:#5b6577;margin:0 0 18px}
.banner{background:#b3261e;color:#fff;font-weight:700;padding:14px 24px;font-size:18px;text-align:center}
.note{background:#fff4ce;border:1px solid #e5c65c;padding:8px 12px;border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px}
.card{background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:10px 14px}
.card .k{color:#5b6577;font-size:13px}.card .v{font-size:22px;font-weight:650}.card .x{color:#5b6577;font-size:12px}
.plots{display:grid;align-items:start;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:8px}
figure img{width:100%;height:auto}figcaption{color:#5b6577;font-size:13px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:14px}
th,td{border:1px solid #d8dce3;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.one{max-width:760px}.wide{overflow-x:auto}
pre{white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto;background:#f6f7f9;padding:6px}
"""


def render_html(report: dict[str, Any], rows: Sequence[ResultRow]) -> str:
    """The report page of one run: summary, plots, errors by kind, and the first wrong problems."""
    title = f"hyperteam eval: {report.get('suite')} · {report.get('team')}"
    meta = [
        f"suite {report.get('suite')}" + (f" ({report['split']})" if report.get("split") else ""),
        f"team {report.get('team')}",
        f"model {report.get('model') or 'per the team file'}",
        f"started {_when(report.get('started_at'))}",
    ]
    if report.get("concurrency"):
        meta.append(f"concurrency {report['concurrency']}")
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="sub">{escape(" · ".join(meta))}</p>']
    parts += ["<h2>Summary</h2>", _cards(report)]
    parts += ["<h2>Plots</h2>", _plots(report, rows)]
    parts += ["<h2>Per agent</h2>", _breakdown(report["per_agent"], "agent")]
    parts += ["<h2>Per layer</h2>", _breakdown(report["per_layer"], "layer")]
    parts += ["<h2>Errors by kind</h2>", _errors(report["errors_by_kind"])]
    wrong = [r for r in rows if not r.correct_strict]
    parts += [f"<h2>Wrong problems (strict), first {min(len(wrong), WRONG_SHOWN)} of {len(wrong)}</h2>"]
    parts += [_wrong_table(wrong[:WRONG_SHOWN])]
    parts += endpoint_notes_html(report.get("endpoints"))
    return _page(title, "\n".join(parts), simulated=bool(report.get("simulated")))


def endpoint_notes(endpoints: Sequence[dict[str, Any]] | None) -> list[str]:
    """One line per thing a server turned out to leave out or ignore (``n``, usage, ...), naming the server."""
    return [f"{ep.get('url')}: {note}" for ep in endpoints or [] for note in ep.get("notes") or []]


def endpoint_notes_html(endpoints: Sequence[dict[str, Any]] | None) -> list[str]:
    """The same notes as a section of a report page; nothing when there are none."""
    lines = endpoint_notes(endpoints)
    if not lines:
        return []
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return ["<h2>Model servers</h2>", f'<div class="note"><ul>{items}</ul></div>']


def render_compare_html(reports: Sequence[dict[str, Any]]) -> str:
    """A page comparing runs: one table row and one accuracy-vs-tokens point per run."""
    head = ["run", "suite", "team", "model", "n", "strict", "flexible", "tokens/prob", "calls/prob", "p50 s"]
    head += ["errors", "sim"]
    body = []
    for r in reports:
        acc, ci, lat = r["accuracy"], r["ci95"], r["latency_s"]
        cells = [r.get("run_dir", ""), r.get("suite"), r.get("team"), r.get("model") or "per team file", r["n"]]
        cells += [pct_ci(acc["strict"], ci["strict"]), pct_ci(acc["flexible"], ci["flexible"])]
        cells += [num(r["tokens"]["per_problem"], 0), num(r["calls_per_problem"], 2), num(lat["p50"], 2)]
        cells += [r["errors"], "yes" if r.get("simulated") else "no"]
        tds = [f"<td{' class=n' if i >= 4 else ''}>{escape(str(c))}</td>" for i, c in enumerate(cells)]
        body.append("<tr>" + "".join(tds) + "</tr>")
    table = '<div class="wide"><table><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    table += "".join(body) + "</table></div>"
    fig = _figure(_draw_compare, reports, caption="Strict accuracy (95% interval) against tokens per problem.")
    plot = f'<p class="note">{escape(_NO_MPL)}</p>' if fig is None else fig or "<p>No problems: nothing to plot.</p>"
    content = f"<h1>hyperteam eval: {len(reports)} runs compared</h1>{table}"
    paired = [r for r in reports[1:] if r.get("paired")]
    if paired:
        first = reports[0].get("run_dir")
        texts = [paired_text(r["paired"], str(first), str(r.get("run_dir"))) for r in paired]
        lines = "".join(f"<li>{escape(t)}</li>" for t in texts)
        content += f"<h2>Paired differences (same problems)</h2><ul>{lines}</ul>"
    content += f'<h2>Accuracy vs tokens</h2><div class="one">{plot}</div>'
    return _page("hyperteam eval compare", content, simulated=any(r.get("simulated") for r in reports))


def _page(title: str, content: str, *, simulated: bool) -> str:
    banner = f'<div class="banner">{escape(SIMULATED_BANNER)}</div>' if simulated else ""
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>{banner}<main>\n{content}\n</main></body></html>\n"
    )


def _cards(r: dict[str, Any]) -> str:
    lat, acc, ci = r["latency_s"], r["accuracy"], r["ci95"]
    cards = [
        ("accuracy (strict)", pct(acc["strict"]), "95% CI " + ci_text(ci["strict"])),
        ("accuracy (flexible)", pct(acc["flexible"]), "95% CI " + ci_text(ci["flexible"])),
        ("problems", problems_text(r), f"{r['correct']['strict']} correct (strict)"),
        ("tokens / problem", num(r["tokens"]["per_problem"], 0), f"{r['tokens']['total']:,} in all"),
        ("calls / problem", num(r["calls_per_problem"], 2), f"{r['calls']:,} in all"),
        ("latency p50", f"{num(lat['p50'], 2)} s", f"p90 {num(lat['p90'], 2)} s · p99 {num(lat['p99'], 2)} s"),
        ("errors", str(r["errors"]), "counted as wrong"),
        ("wall time", f"{num(r.get('wall_s'), 1)} s", f"mean latency {num(lat['mean'], 2)} s"),
    ]
    if r.get("baseline"):
        b = r["baseline"]
        detail = f"{b['samples']} samples, {num(b['tokens']['per_problem'], 0)} tokens / problem"
        if b.get("token_ratio") is not None:
            detail += f" ({b['token_ratio']:.2f}x the team's" + ("" if b["equal_tokens"] else ": NOT equal") + ")"
        if b.get("paired"):
            p, (lo, hi) = b["paired"], b["paired"]["ci95"]
            detail += f"; vs team {100 * p['diff']:+.1f} pts ({100 * lo:+.1f} to {100 * hi:+.1f})"
            detail += f", McNemar p={p['mcnemar_p']:.3g}"
        cards.append((f"baseline: {b['team']}", pct(b["accuracy"]["strict"]), detail))
    html = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
        f'<div class="x">{escape(x)}</div></div>'
        for k, v, x in cards
    )
    return f'<div class="cards">{html}</div>'


def _breakdown(stats: dict[str, dict[str, Any]], label: str) -> str:
    if not stats:
        return "<p>No trace events.</p>"
    cols = ["accuracy", "problems", "answered", "calls", "tokens", "errors"]
    cols += ["source", "agent_accuracy"] if label == "layer" else []
    head = f"<tr><th>{label}</th>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols) + "</tr>"
    body = ""
    for name, s in stats.items():
        cells = [pct(s[c]) if c.endswith("accuracy") else escape(str(s[c])) for c in cols]
        body += f"<tr><td>{escape(name)}</td>" + "".join(f'<td class="n">{c}</td>' for c in cells) + "</tr>"
    return f"<table>{head}{body}</table>"


def _errors(by_kind: dict[str, int]) -> str:
    if not by_kind:
        return "<p>No errors.</p>"
    body = "".join(f'<tr><td>{escape(k)}</td><td class="n">{n}</td></tr>' for k, n in by_kind.items())
    return f"<table><tr><th>kind</th><th>problems</th></tr>{body}</table>"


def _wrong_table(rows: Sequence[ResultRow]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "<tr><th>#</th><th>question</th><th>gold</th><th>strict</th><th>flexible</th><th>error</th></tr>"
    body = []
    for r in rows:
        error = f"{r.error_kind}: {r.error}" if r.error_kind else ""
        output = f"<details><summary>output</summary><pre>{escape(_cut(r.prediction, _OUTPUT_CHARS))}</pre></details>"
        cells = [_cut(r.question, _QUESTION_CHARS), r.gold, r.answer_strict or "—", r.answer_flexible or "—"]
        body.append(
            f'<tr><td class="n" title="{escape(r.problem_id)}">{r.idx}</td>'
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td>{escape(_cut(error, 300))}{output}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _plots(report: dict[str, Any], rows: Sequence[ResultRow]) -> str:
    if not rows:
        return "<p>No problems: nothing to plot.</p>"
    figs = [
        _figure(_draw_scatter, (report, rows), caption="Each problem's tokens against its strict result (jittered)."),
        _figure(_draw_bars, (report["per_agent"], "agent"), caption="Accuracy of each agent's final answer."),
        _figure(
            _draw_bars, (report["per_layer"], "layer"), caption="Accuracy of each layer's fused (or voted) answer."
        ),
        _figure(_draw_latency, rows, caption="Per-problem latency."),
    ]
    if any(f is None for f in figs):
        return f'<p class="note">{escape(_NO_MPL)}</p>'
    return f'<div class="plots">{"".join(f for f in figs if f)}</div>'


def _figure(draw: Any, data: Any, *, caption: str) -> str | None:
    """A ``<figure>`` with ``draw(fig, data)`` as PNG; "" if nothing to draw, None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    if draw(fig, data) is False:
        return ""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data_uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img alt="{escape(caption)}" src="{data_uri}"><figcaption>{escape(caption)}</figcaption></figure>'


def _draw_scatter(fig: Any, data: tuple[dict[str, Any], Sequence[ResultRow]]) -> None:
    report, rows = data
    rng = random.Random(0)  # a fixed seed keeps the page identical across re-renders
    size = 28 if len(rows) <= 200 else 12  # big dots for small runs, small ones so that large runs stay readable
    ax = fig.add_subplot()
    for ok, color, label in ((True, "#2e7d32", "correct"), (False, "#c62828", "wrong")):
        xs = [r.prompt_tokens + r.completion_tokens for r in rows if r.correct_strict == ok]
        ys = [float(ok) + rng.uniform(-0.08, 0.08) for _ in xs]
        ax.scatter(xs, ys, s=size, alpha=0.5, color=color, label=label, linewidths=0)
    lo, hi = report["ci95"]["strict"]
    acc = report["accuracy"]["strict"]
    mean_tokens, err = report["tokens"]["per_problem"], [[acc - lo], [hi - acc]]
    label = f"run: {100 * acc:.1f}% at {mean_tokens:,.0f} tokens"
    ax.errorbar([mean_tokens], [acc], yerr=err, fmt="D", color="#1a237e", markersize=9, capsize=4, label=label)
    base = report.get("baseline")
    if base and base["accuracy"]["strict"] is not None:
        b_acc, (b_lo, b_hi) = base["accuracy"]["strict"], base["ci95"]["strict"]
        b_tokens = base["tokens"]["per_problem"]
        b_label = f"{base['team']} x{base['samples']}: {100 * b_acc:.1f}% at {b_tokens:,.0f} tokens"
        ax.errorbar([base["tokens"]["per_problem"]], [b_acc], yerr=[[b_acc - b_lo], [b_hi - b_acc]], fmt="s",
                    color="#e65100", markersize=9, capsize=4, label=b_label)  # fmt: skip
    ax.set_xlabel("tokens per problem")
    ax.set_ylabel("correct (strict); run accuracy")
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], labels=["wrong", "25%", "50%", "75%", "correct"])
    ax.set_ylim(-0.15, 1.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title("Accuracy vs tokens")


def _draw_bars(fig: Any, data: tuple[dict[str, dict[str, Any]], str]) -> bool:
    stats, label = data
    names = [n for n, s in stats.items() if s["accuracy"] is not None]
    if not names:
        return False
    fig.set_size_inches(6.4, max(2.4, 0.9 + 0.32 * len(names)))
    ax = fig.add_subplot()
    values = [100 * stats[n]["accuracy"] for n in names]
    bars = ax.barh(range(len(names)), values, height=0.6, color="#3f6fb5")
    ax.bar_label(bars, labels=[f"{v:.1f}%" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()  # the team's order, top to bottom
    ax.set_xlim(0, 110)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(f"Per-{label} accuracy")
    ax.grid(axis="x", alpha=0.3)
    return True


def _draw_latency(fig: Any, rows: Sequence[ResultRow]) -> None:
    ax = fig.add_subplot()
    ax.hist([r.latency_s for r in rows], bins=min(40, max(5, len(rows) // 3)), color="#6d5bb5")
    ax.set_xlabel("latency per problem (s)")
    ax.set_ylabel("problems")
    ax.set_title("Latency distribution")
    ax.grid(alpha=0.3)


def _draw_compare(fig: Any, reports: Sequence[dict[str, Any]]) -> bool:
    points = [r for r in reports if r["accuracy"]["strict"] is not None]
    if not points:
        return False
    ax = fig.add_subplot()
    xs = [r["tokens"]["per_problem"] for r in points]
    middle = (min(xs) + max(xs)) / 2
    for i, (r, x) in enumerate(zip(points, xs, strict=True)):
        acc, (lo, hi) = 100 * r["accuracy"]["strict"], r["ci95"]["strict"]
        label = f"{r.get('run_dir') or r.get('team')} ({r.get('team')})"
        err = [[acc - 100 * lo], [100 * hi - acc]]
        ax.errorbar([x], [acc], yerr=err, fmt="o", capsize=4, color=f"C{i % 10}", label=label)
        # Labels point inwards so that the outermost ones stay inside the axes.
        side = 1 if x <= middle else -1
        ha = "left" if side == 1 else "right"
        ax.annotate(str(r.get("team")), (x, acc), xytext=(6 * side, 4), textcoords="offset points", ha=ha, fontsize=8)
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel("tokens per problem")
    ax.set_ylabel("accuracy, strict (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy vs tokens, per run")
    return True


def _when(started: Any) -> str:
    if isinstance(started, int | float):
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(started) if started else "unknown"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pct(x: float | None) -> str:
    """``0.8`` as ``80.0%``; ``n/a`` for None."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def pct_ci(x: float | None, ci: list[float] | None) -> str:
    """An accuracy with its interval: ``80.0% [49.0, 94.3]``."""
    return pct(x) if ci is None else f"{pct(x)} {ci_text(ci)}"


def num(x: float | None, digits: int) -> str:
    """A number with thousands separators; ``n/a`` for None."""
    return "n/a" if x is None else f"{x:,.{digits}f}"


def paired_text(paired: dict[str, Any], a: str, b: str) -> str:
    """One line: ``b - a`` in points with its paired 95% interval, McNemar's exact p and the discordant counts."""
    lo, hi = paired["ci95"]
    return (
        f"{b} - {a}: {100 * paired['diff']:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}) "
        f"on {paired['n']} shared problems; McNemar exact p = {paired['mcnemar_p']:.3g}; "
        f"right only in {b}: {paired['only_b']}, only in {a}: {paired['only_a']}"
    )


def ci_text(ci: list[float] | None) -> str:
    """A 95% interval in percent: ``[49.0, 94.3]``; ``n/a`` for None."""
    return "n/a" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def problems_text(report: dict[str, Any]) -> str:
    """``120``, or ``120 of 1,319`` when the run stopped before the end of its suite."""
    planned = report.get("planned")
    return (
        f"{report['n']:,} of {planned:,}" if isinstance(planned, int) and planned > report["n"] else f"{report['n']:,}"
    )
