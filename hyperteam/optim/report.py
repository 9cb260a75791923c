"""The training report: validation per step, patches kept and rejected, tokens by team and optimizer.

Written as ``train_report.json`` and a self-contained ``train_report.html``
(inline CSS, the learning curve as an inline PNG, no scripts, nothing
fetched) in the style of the eval reports. A run made with the simulated
model says so at the top of both.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperteam.evals._html import _figure, _page, num, pct
from hyperteam.models.spec import is_simulated

if TYPE_CHECKING:
    from hyperteam.optim.trainer import Trainer

_PATCH_CHARS = 1500


def build_report(trainer: Trainer) -> dict[str, Any]:
    """The report of a training run, as plain data."""
    t = trainer
    team_specs = [t.model, t.optimizer_model, t.team.model, *(a.model for a in t.team.agents)]
    accepted = [s for s in t.steps if s.get("outcome") == "accepted"]
    patches = [dict(p, outcome=s.get("outcome")) for s in t.steps for p in s.get("patches", [])]
    return {
        "team": t.team.name,
        "model": _name(t.model),
        "optimizer_model": _name(t.optimizer_model),
        "simulated": is_simulated(*team_specs),
        "config": {
            "train": len(t.train),
            "val": len(t.val),
            "epochs": t.epochs,
            "batch": t.batch,
            "val_batch": t.val_batch,
            "budget_tokens": t.budget_tokens,
            "seed": t.seed,
        },
        "stopped": t.stopped,
        "resumed_from_step": t.resumed_from,
        "initial_val": t.curve[0]["val"] if t.curve else None,
        "final_val": t.val_score if t.val_correct else None,
        "steps_run": len(t.steps),
        "steps_accepted": len(accepted),
        "curve": t.curve,
        "steps": t.steps,
        "patches": {
            "accepted": [p for p in patches if p.get("accepted")],
            "rejected": [p for p in patches if p["status"] == "rejected"],
            "reverted": [p for p in patches if p["status"] == "applied" and p.get("accepted") is False],
        },
        "tokens": {
            "team": t.team_usage.to_dict(),
            "optimizer": t.optimizer_usage.to_dict(),
            "total": t.tokens,
        },
        "pool": {name: len(v) for name, v in t.pool.variants.items()},
        "wall_s": round(t.wall_s, 3),
    }


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``train_report.json`` and ``train_report.html`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "train_report.json", out / "train_report.html"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def render_html(r: dict[str, Any]) -> str:
    title = f"hyperteam train: {r['team']}"
    sub = f"model {r['model'] or 'per the team file'} · optimizer {r['optimizer_model'] or 'same'} · {r['stopped']}"
    tokens = r["tokens"]
    cards = [
        ("validation", f"{pct(r['initial_val'])} → {pct(r['final_val'])}", "before → after training"),
        ("steps", str(r["steps_run"]), f"{r['steps_accepted']} accepted"),
        ("team tokens", f"{tokens['team']['total_tokens']:,}", f"{tokens['team']['calls']:,} calls"),
        ("optimizer tokens", f"{tokens['optimizer']['total_tokens']:,}", f"{tokens['optimizer']['calls']:,} calls"),
        ("wall time", f"{num(r['wall_s'], 1)} s", f"resumed after step {r['resumed_from_step']}"
         if r["resumed_from_step"] is not None else "one run"),
    ]  # fmt: skip
    card_html = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
        f'<div class="x">{escape(x)}</div></div>'
        for k, v, x in cards
    )
    curve = _figure(_draw_curve, r["curve"], caption="Validation score after each step (filled: accepted).")
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="sub">{escape(sub)}</p>', f'<div class="cards">{card_html}</div>']
    parts += ["<h2>Learning curve</h2>", curve if curve is not None else '<p class="note">Plots need matplotlib.</p>']
    parts += ["<h2>Steps</h2>", _steps_table(r["steps"])]
    for kind in ("accepted", "reverted", "rejected"):
        parts += [f"<h2>Patches {kind} ({len(r['patches'][kind])})</h2>", _patch_table(r["patches"][kind])]
    return _page(title, "\n".join(parts), simulated=bool(r["simulated"]))


def _steps_table(steps: list[dict[str, Any]]) -> str:
    if not steps:
        return "<p>No steps.</p>"
    head = "<tr><th>step</th><th>epoch</th><th>train</th><th>outcome</th><th>val</th><th>team tok</th>"
    head += "<th>optim tok</th><th>why</th></tr>"
    rows = []
    for s in steps:
        cells = [str(s["step"]), str(s["epoch"]), pct(s.get("train_score")), s["outcome"], pct(s["val"])]
        cells += [f"{s['tokens']['team']:,}", f"{s['tokens']['optimizer']:,}"]
        rows.append(
            "<tr>" + "".join(f'<td class="n">{escape(c)}</td>' for c in cells) + f"<td>{escape(s['reason'])}</td></tr>"
        )
    return f'<div class="wide"><table>{head}{"".join(rows)}</table></div>'


def _patch_table(patches: list[dict[str, Any]]) -> str:
    if not patches:
        return "<p>None.</p>"
    head = "<tr><th>step</th><th>layer</th><th>patch</th><th>reason</th></tr>"
    rows = [
        f'<tr><td class="n">{p["step"]}</td><td>{escape(p["layer"])}</td>'
        f"<td><pre>{escape(p['text'][:_PATCH_CHARS])}</pre></td><td>{escape(p['reason'])}</td></tr>"
        for p in patches
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _draw_curve(fig: Any, curve: list[dict[str, Any]]) -> bool:
    if not curve:
        return False
    ax = fig.add_subplot()
    xs, ys = [c["step"] for c in curve], [c["val"] for c in curve]
    ax.plot(xs, ys, color="#1f5fbf", linewidth=1.5)
    kept = [c for c in curve if c["accepted"]]
    ax.scatter([c["step"] for c in kept], [c["val"] for c in kept], color="#1f5fbf", zorder=3, label="accepted")
    rest = [c for c in curve if not c["accepted"]]
    ax.scatter([c["step"] for c in rest], [c["val"] for c in rest], facecolors="white", edgecolors="#1f5fbf", zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    return True


def _name(model: Any) -> str | None:
    return model if isinstance(model, str) or model is None else getattr(model, "name", type(model).__name__)
