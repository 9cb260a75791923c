"""The training report: validation and held-out test side by side, patches, failures, tokens.

Written as ``train_report.json`` and a self-contained ``train_report.html``
(inline CSS, the learning curves as an inline PNG, no scripts, nothing
fetched) in the style of the eval reports. Validation selected the patches,
so the report's claim is the ``test`` section: the untrained and the
trained team on held-out problems, the change with its paired 95% interval,
the exact McNemar p-value and the validation-minus-test gap. Failed problems
(by kind), aggregator and router fallbacks, and patches repaired, retried or
rejected are counted. A run made with the simulated model says so at the top
of both.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperteam.evals._html import _figure, _page, endpoint_notes_html, num, pct
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
    problems = {
        "failed": t.failures.n_failed,
        "of": t.failures.problems,
        "failed_by_kind": dict(t.failures.failed),
        "fallbacks": dict(t.failures.fallbacks),
        "replies_per_agent": t.failures.replies_dict(),  # empty, truncated (max_tokens), fallback
        "steps_with_failures": sum(1 for s in t.steps if s.get("failed", {}).get("failed")),
    }
    replies = {
        "patches": len(patches),
        "repaired": sum(1 for p in patches if p.get("notes")),
        "retried": sum(1 for p in patches if p.get("retried")),
        "rejected": sum(1 for p in patches if p["status"] == "rejected"),
        "structured_output": dict(t.optimizer.honours_schema),
    }
    return {
        "team": t.team.name,
        "model": _name(t.model),
        "optimizer_model": _name(t.optimizer_model),
        "simulated": is_simulated(*(_name(s) for s in team_specs)),
        "config": {
            "train": len(t.train),
            "val": len(t.val),
            "epochs": t.epochs,
            "batch": t.batch,
            "val_batch": t.val_batch,
            "budget_tokens": t.budget_tokens,
            "seed": t.seed,
            "test": len(t.test),
            "ops": list(t.optimizer.ops),
        },
        "stopped": t.stopped,
        "resumed_from_step": t.resumed_from,
        "initial_val": t.curve[0]["val"] if t.curve else None,
        "final_val": t.val_score if t.val_correct else None,
        "test": t.test_report,
        "failures": problems,
        "updater_replies": replies,
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
            "team": t.team_usage.to_dict(),  # training and validation
            "optimizer": t.optimizer_usage.to_dict(),
            "test": t.test_usage.to_dict(),  # the held-out test (and its baseline): not training
            "total": t.tokens + t.test_usage.total_tokens,
        },
        "pool": {name: len(v) for name, v in t.pool.variants.items()},
        # Per endpoint: the in-flight limit found and what the server left out (n ignored, no usage, ...).
        "endpoints": t.endpoints,
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
        ("validation", f"{pct(r['initial_val'])} → {pct(r['final_val'])}", "selected on: not a claim"),
        _test_card(r.get("test")),
        ("steps", str(r["steps_run"]), f"{r['steps_accepted']} accepted"),
        ("team tokens (training)", f"{tokens['team']['total_tokens']:,}", f"{tokens['team']['calls']:,} calls; "
         f"held-out test {(tokens.get('test') or {}).get('total_tokens', 0):,} more"),
        ("optimizer tokens", f"{tokens['optimizer']['total_tokens']:,}", f"{tokens['optimizer']['calls']:,} calls"),
        ("wall time", f"{num(r['wall_s'], 1)} s", f"resumed after step {r['resumed_from_step']}"
         if r["resumed_from_step"] is not None else "one run"),
    ]  # fmt: skip
    card_html = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div>'
        f'<div class="x">{escape(x)}</div></div>'
        for k, v, x in cards
    )
    caption = "Validation score after each step (filled: accepted)"
    caption += "; held-out test accuracy of the untrained and the trained team (dashed)." if r.get("test") else "."
    curve = _figure(_draw_curve, (r["curve"], r.get("test")), caption=caption)
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="sub">{escape(sub)}</p>', f'<div class="cards">{card_html}</div>']
    parts += ["<h2>Validation and test</h2>", _test_table(r)]
    parts += ["<h2>Learning curves</h2>", curve if curve is not None else '<p class="note">Plots need matplotlib.</p>']
    parts += ["<h2>Failures and fallbacks</h2>", _failures(r)]
    parts += ["<h2>Steps</h2>", _steps_table(r["steps"])]
    for kind in ("accepted", "reverted", "rejected"):
        parts += [f"<h2>Patches {kind} ({len(r['patches'][kind])})</h2>", _patch_table(r["patches"][kind])]
    parts += endpoint_notes_html(r.get("endpoints"))
    return _page(title, "\n".join(parts), simulated=bool(r["simulated"]))


def _test_card(test: dict[str, Any] | None) -> tuple[str, str, str]:
    if not test:
        return ("test", "none", "no held-out test problems")
    verdict = "significant" if test["significant"] else "not significant"
    return (
        "held-out test",
        f"{pct(test['untrained'])} → {pct(test['trained'])}",
        f"n = {test['n']}, McNemar p = {test['p_value']:.3g} ({verdict})",
    )


def _test_table(r: dict[str, Any]) -> str:
    test = r.get("test")
    if not test:
        return (
            '<p class="note">No held-out test problems: the validation score below selected the patches, '
            "so it overstates what training did. Pass --test N.</p>"
        )
    rows = [
        ("validation (selected on)", pct(test["untrained_val"]), pct(test["trained_val"]), ""),
        ("held-out test", pct(test["untrained"]), pct(test["trained"]),
         f"{test['change']:+.3f} [{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}], McNemar p = {test['p_value']:.3g}"),
    ]  # fmt: skip
    if test.get("trained_tokens") is not None:
        rows.append(("test tokens / problem", num(test["untrained_tokens"], 0), num(test["trained_tokens"], 0), ""))
    sc = test.get("self_consistency")
    if sc and "error" in sc:
        rows.append(("self-consistency at the trained team's tokens", "", "failed", sc["error"]))
    elif sc:
        equal = "" if sc["equal_tokens"] else ": NOT an equal-token comparison"
        ratio = "?" if sc["token_ratio"] is None else f"{sc['token_ratio']:.2f}"
        rows.append((f"self-consistency x{sc['samples']} at {ratio}x the trained team's tokens{equal}",
                     "", pct(sc["accuracy"]), f"minus trained {sc['diff']:+.3f} [{sc['ci95'][0]:+.3f}, "
                     f"{sc['ci95'][1]:+.3f}], McNemar p = {sc['p_value']:.3g}"))  # fmt: skip
    head = "<tr><th></th><th>untrained</th><th>trained</th><th>change (95% CI)</th></tr>"
    body = "".join(
        f'<tr><td>{escape(a)}</td><td class="n">{escape(b)}</td><td class="n">{escape(c)}</td><td>{escape(d)}</td></tr>'
        for a, b, c, d in rows
    )
    verdict = "is" if test["significant"] else "is not"
    note = (
        f"<p>On {test['n']} held-out test problems the change {verdict} significant (p = {test['p_value']:.3g}); "
        f"validation minus test after training: {test['gap']:+.3f}.</p>"
    )
    return f"<table>{head}{body}</table>{note}"


def _failures(r: dict[str, Any]) -> str:
    f, u = r.get("failures") or {}, r.get("updater_replies") or {}
    kinds = ", ".join(f"{k}: {n}" for k, n in (f.get("failed_by_kind") or {}).items()) or "none"
    falls = ", ".join(f"{k}: {n}" for k, n in (f.get("fallbacks") or {}).items()) or "none"
    items = [
        f"problems failed: {f.get('failed', 0)} of {f.get('of', 0)} runs ({kinds}); "
        f"steps with failures: {f.get('steps_with_failures', 0)}",
        f"aggregator and router fallbacks: {falls}",
        "replies to look at (empty / cut by max_tokens / fallback): "
        + (
            "; ".join(
                f"{agent}: {c.get('empty', 0)} / {c.get('truncated', 0)} / {c.get('fallback', 0)}"
                for agent, c in (f.get("replies_per_agent") or {}).items()
            )
            or "none"
        ),
        f"updater replies: {u.get('patches', 0)} patches, {u.get('repaired', 0)} read after a repair, "
        f"{u.get('retried', 0)} asked again, {u.get('rejected', 0)} rejected",
    ]
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


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


def _draw_curve(fig: Any, data: tuple[list[dict[str, Any]], dict[str, Any] | None]) -> bool:
    curve, test = data
    if not curve:
        return False
    ax = fig.add_subplot()
    xs, ys = [c["step"] for c in curve], [c["val"] for c in curve]
    ax.plot(xs, ys, color="#1f5fbf", linewidth=1.5, label="validation (selected on)")
    if test:
        ends = [xs[0], xs[-1]]
        ax.plot(ends, [test["untrained"], test["trained"]], "--o", color="#c0392b", label="held-out test")
        ax.legend(loc="lower right")
    kept = [c for c in curve if c["accepted"]]
    ax.scatter([c["step"] for c in kept], [c["val"] for c in kept], color="#1f5fbf", zorder=3)
    rest = [c for c in curve if not c["accepted"]]
    ax.scatter([c["step"] for c in rest], [c["val"] for c in rest], facecolors="white", edgecolors="#1f5fbf", zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    return True


def _name(model: Any) -> str | None:
    return model if isinstance(model, str) or model is None else getattr(model, "name", type(model).__name__)
