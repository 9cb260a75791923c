"""The eval report: its numbers, the terminal table, the HTML page, and comparing runs."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from hyperteam.errors import ConfigError
from hyperteam.evals import compare as cmp
from hyperteam.evals.report import (
    SIMULATED_BANNER,
    build_report,
    percentile,
    render_terminal,
    wilson_interval,
    write_report,
)
from hyperteam.evals.store import ResultRow, ResultStore

META = {
    "suite": "gsm8k",
    "split": "test",
    "team": "tri",
    "model": "sim:0.8",
    "simulated": True,
    "wall_s": 12.5,
    "started_at": 1_700_000_000.0,
    "concurrency": 4,
}
SCRIPT = "<script>alert(1)</script>"


def ev(layer: str, agent: str, answer: str | None, *, kind: str = "agent", error: str | None = None) -> dict[str, Any]:
    tokens, calls = (0, 0) if kind == "fusion" else (10, 1)
    usage = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens, "calls": calls}
    return {
        "kind": kind, "layer": layer, "agent": agent, "input": "q", "output": f"says {answer}", "answer": answer,
        "usage": usage | {"latency_s": 0.1}, "error": error, "detail": {},
    }  # fmt: skip


def trace(a: str | None, b: str | None, c: str | None, fused: str | None = None, **kw: Any) -> list[dict[str, Any]]:
    events = [ev("round1", "a", a), ev("round1", "b", b, **kw), ev("round1", "c", c)]
    return events + ([ev("fusion", "fusion.vote", fused, kind="fusion")] if fused else [])


def row(
    i: int,
    gold: str,
    strict: str | None,
    flexible: str | None,
    tokens: tuple[int, int],
    calls: int,
    latency: float,
    tr: list[dict[str, Any]],
    *,
    kind: str | None = None,
    prediction: str = "",
) -> ResultRow:
    return ResultRow(
        problem_id=f"t-{i}", idx=i, question=f"question {i} <b>bold</b>", gold=gold,
        prediction=prediction or f"The answer is {strict}", answer_strict=strict, answer_flexible=flexible,
        correct_strict=strict == gold, correct_flexible=flexible == gold, prompt_tokens=tokens[0],
        completion_tokens=tokens[1], calls=calls, latency_s=latency, error_kind=kind,
        error=f"{kind} happened" if kind else None, trace=tr,
    )  # fmt: skip


def make_rows() -> list[ResultRow]:
    """Six problems: 2 right (strict), 3 right (flexible), 2 errors; three agents, a voting round and a fusion."""
    return [
        row(0, "18", "18", "18", (100, 20), 3, 1.0, trace("18", "18", "5", "18")),
        row(1, "7", None, "7", (200, 40), 3, 2.0, trace("7", "3", "7", "7")),
        row(2, "42", "41", "41", (300, 60), 3, 3.0, trace("41", "41", "42", "41"), prediction=f"{SCRIPT} 41"),
        row(3, "5", None, None, (50, 0), 2, 10.0, trace("5", None, None, error="timeout: slow"), kind="timeout"),
        row(4, "9", "9", "9", (100, 20), 3, 4.0, trace("9", "9", "9", "9")),
        row(5, "1", None, None, (0, 0), 1, 0.5, [], kind="http_500"),
    ]


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    # The textbook form: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n).
    p = k / n
    mid, spread = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (mid - spread) / (1 + z**2 / n), (mid + spread) / (1 + z**2 / n)


def test_headline_numbers_count_errors_as_wrong() -> None:
    r = build_report(make_rows(), META)
    assert (r["suite"], r["team"], r["model"], r["simulated"], r["wall_s"]) == ("gsm8k", "tri", "sim:0.8", True, 12.5)
    assert r["n"] == 6
    assert r["accuracy"] == {"strict": pytest.approx(2 / 6, abs=1e-6), "flexible": 0.5}
    assert r["correct"] == {"strict": 2, "flexible": 3}
    assert r["answered"] == {"strict": 3, "flexible": 4}
    assert r["tokens"] == {"prompt": 750, "completion": 140, "total": 890, "per_problem": pytest.approx(890 / 6)}
    assert (r["calls"], r["calls_per_problem"]) == (15, 2.5)
    assert r["errors"] == 2
    assert r["errors_by_kind"] == {"http_500": 1, "timeout": 1}


def test_wilson_interval_matches_hand_computation() -> None:
    r = build_report(make_rows(), META)
    assert r["ci95"]["strict"] == pytest.approx(wilson_by_hand(2, 6), abs=1e-6)
    assert r["ci95"]["flexible"] == pytest.approx([0.187610, 0.812390], abs=1e-5)  # symmetric at 3/6
    assert wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)  # the published 8/10 example
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) is None


def test_latency_percentiles_interpolate_linearly() -> None:
    lat = build_report(make_rows(), META)["latency_s"]
    # Sorted latencies 0.5 1 2 3 4 10: p50 halfway 2..3, p90 halfway 4..10, p99 at 95% of 4..10.
    assert lat == {"p50": 2.5, "p90": 7.0, "p99": pytest.approx(9.7), "mean": pytest.approx(20.5 / 6), "max": 10.0}
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_per_agent_scores_each_agents_answer_against_gold() -> None:
    agents = build_report(make_rows(), META)["per_agent"]
    assert list(agents) == ["a", "b", "c"]
    assert agents["a"] == {
        "accuracy": 0.8,
        "problems": 5,
        "answered": 5,
        "correct": 4,
        "calls": 5,
        "tokens": 50,
        "errors": 0,
    }
    assert agents["b"] == {
        "accuracy": 0.4,
        "problems": 5,
        "answered": 4,
        "correct": 2,
        "calls": 5,
        "tokens": 50,
        "errors": 1,
    }
    assert (agents["c"]["accuracy"], agents["c"]["answered"]) == (0.6, 4)


def test_per_agent_uses_the_last_answer_of_an_agent_that_speaks_twice() -> None:
    tr = [ev("debate", "a", "1"), ev("debate", "a", "2"), ev("debate", "debate.vote", "2", kind="fusion")]
    r = build_report([row(0, "2", "2", "2", (1, 1), 2, 1.0, tr)], META)
    assert (r["per_agent"]["a"]["accuracy"], r["per_agent"]["a"]["problems"], r["per_agent"]["a"]["calls"]) == (
        1.0,
        1,
        2,
    )
    assert r["per_layer"]["debate"]["agent_accuracy"] == 0.5  # one of its two calls was right


def test_per_layer_scores_fused_answers_and_votes_rounds_without_fusion() -> None:
    layers = build_report(make_rows(), META)["per_layer"]
    assert list(layers) == ["round1", "fusion"]
    # round1 has no fusion event: its majority votes are 18, 7, 41, 5, 9 against 18, 7, 42, 5, 9.
    assert layers["round1"] == {
        "accuracy": 0.8, "problems": 5, "answered": 5, "correct": 4, "calls": 15, "tokens": 150, "errors": 1,
        "source": "vote", "agent_accuracy": 0.6,
    }  # fmt: skip
    assert layers["fusion"]["accuracy"] == 0.75 and layers["fusion"]["problems"] == 4
    assert (layers["fusion"]["source"], layers["fusion"]["agent_accuracy"]) == ("fusion", None)


def test_a_tied_vote_takes_the_first_answer_seen() -> None:
    tr = [ev("r", "a", "3"), ev("r", "b", "4")]
    assert build_report([row(0, "3", "3", "3", (1, 1), 2, 1.0, tr)], META)["per_layer"]["r"]["accuracy"] == 1.0


def test_empty_run_reports_nulls() -> None:
    r = build_report([], {"suite": "demo", "team": "single", "simulated": False})
    assert r["n"] == 0
    assert r["accuracy"] == {"strict": None, "flexible": None}
    assert r["ci95"] == {"strict": None, "flexible": None}
    assert r["latency_s"]["p50"] is None and r["tokens"]["per_problem"] is None
    assert (r["per_agent"], r["per_layer"], r["errors_by_kind"], r["wall_s"]) == ({}, {}, {}, None)
    text = render_terminal(r)
    assert SIMULATED_BANNER not in text and "n/a" in text


def test_terminal_table_shows_the_numbers_and_a_loud_first_line() -> None:
    text = render_terminal(build_report(make_rows(), META | {"n": 10}))
    assert text.splitlines()[0] == SIMULATED_BANNER
    for expected in ("33.3% [9.7, 70.0]", "50.0% [18.8, 81.2]", "6 of 10", "148", "2.50", "2.50 s / 9.70 s"):
        assert expected in text
    for name in ("timeout", "http_500", "round1", "fusion", "vote", "80.0%", "40.0%"):
        assert name in text
    assert "\x1b[" not in text  # no colour codes unless asked for
    assert not render_terminal(build_report(make_rows(), META | {"simulated": False})).startswith(SIMULATED_BANNER)


def test_terminal_prints_brackets_in_names_literally() -> None:
    rows = [row(0, "1", "1", "1", (1, 1), 1, 1.0, [ev("[/x]", "[bold]a", "1")], kind="[red]odd")]
    report = build_report(rows, META | {"team": "[/team]"})
    text = render_terminal(report, width=200)
    assert "[/team]" in text and "[bold]a" in text and "[/x]" in text and "[red]odd" in text
    assert "[/team]" in cmp.render_compare([report | {"run_dir": "runs/[1]"}])


def store_run(path: Path, rows: list[ResultRow], **meta: Any) -> Path:
    store = ResultStore(path / "results.sqlite")
    for r in rows:
        store.add(r)
    store.set_meta(**(META | meta))
    store.close()
    return path


def test_write_report_writes_json_and_a_self_contained_html(tmp_path: Path) -> None:
    run = store_run(tmp_path / "run", make_rows())
    report = write_report(run)
    on_disk = json.loads((run / "report.json").read_text())
    assert on_disk == report and on_disk["accuracy"]["flexible"] == 0.5
    assert list(on_disk)[:4] == ["suite", "split", "team", "model"]
    page = (run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "url(" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == 4  # scatter, agents, layers, latency
    assert SIMULATED_BANNER in page
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script" not in page.lower()
    assert "timeout happened" in page and "http_500" in page


def test_html_escapes_names_from_the_store(tmp_path: Path) -> None:
    run = store_run(tmp_path / "run", make_rows(), team='<img src=x onerror="alert(1)">', simulated=False)
    write_report(run, tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert SIMULATED_BANNER not in page


def test_html_without_matplotlib_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    run = store_run(tmp_path / "run", make_rows())
    write_report(run)
    page = (run / "report.html").read_text()
    assert "data:image" not in page
    assert "Plots need matplotlib" in page and "hyperteam[viz]" in page
    assert "Wrong problems" in page  # the rest of the page is still there


def test_empty_store_writes_a_report(tmp_path: Path) -> None:
    run = store_run(tmp_path / "empty", [])
    report = write_report(run)
    assert report["n"] == 0 and report["accuracy"]["strict"] is None
    assert "nothing to plot" in (run / "report.html").read_text()


def test_write_report_refuses_a_missing_store_without_creating_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no eval results"):
        write_report(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(ConfigError, match="out_dir"):
        write_report(ResultStore(":memory:"))


def test_compare_reads_reports_and_bare_stores(tmp_path: Path) -> None:
    one = store_run(tmp_path / "one", make_rows())
    write_report(one)
    two = store_run(tmp_path / "two", make_rows()[:2], team="solo", simulated=False)  # no report.json: built
    reports = cmp.compare([one, two])
    assert [r["run_dir"] for r in reports] == [str(one), str(two)]
    assert [r["team"] for r in reports] == ["tri", "solo"]
    assert reports[1]["accuracy"] == {"strict": 0.5, "flexible": 1.0}
    text = cmp.render_compare(reports)
    assert text.splitlines()[0].startswith(SIMULATED_BANNER) and str(one) in text.splitlines()[0]
    assert "33.3% [9.7, 70.0]" in text and "solo" in text
    page_path = tmp_path / "cmp" / "compare.html"
    cmp.write_compare_html(reports, page_path)
    page = page_path.read_text()
    assert page.count('src="data:image/png;base64,') == 1 and SIMULATED_BANNER in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)


def test_compare_cli_writes_files_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = store_run(tmp_path / "one", make_rows())
    two = store_run(tmp_path / "two", make_rows()[:3])
    parser = argparse.ArgumentParser()
    cmp.add_arguments(parser)
    out_json, out_html = tmp_path / "c.json", tmp_path / "c.html"
    args = parser.parse_args([str(one), str(two), "--json", str(out_json), "--html", str(out_html)])
    assert cmp.main(args) == 0
    assert [r["n"] for r in json.loads(out_json.read_text())] == [6, 3]
    assert out_html.read_text().startswith("<!DOCTYPE html>")
    captured = capsys.readouterr()
    assert str(two) in captured.out and "wrote html" in captured.err


def test_compare_names_a_missing_or_unreadable_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no run directory at .*gone"):
        cmp.compare([tmp_path / "gone"])
    (tmp_path / "bare").mkdir()
    with pytest.raises(ConfigError, match=r"bare has neither report\.json nor results\.sqlite"):
        cmp.compare([tmp_path / "bare"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad.report\.json is not a valid report"):
        cmp.compare([tmp_path / "bad"])
