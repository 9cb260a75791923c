"""The eval report as a user reads it: the terminal text line by line, report.json's keys and values,
the baseline table with its paired difference, and the files ``write_report`` leaves (issue 18)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hyperteam.errors import ConfigError
from hyperteam.evals.report import build_report, render_terminal, wilson_interval, write_report
from hyperteam.evals.store import ResultRow, ResultStore

URL = "http://127.0.0.1:8000/v1"


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    # Drawing the page's plots is most of write_report's time; test_report.py checks them.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)


def ev(
    layer: str | None,
    agent: str | None,
    answer: str | None,
    *,
    kind: str = "agent",
    error: str | None = None,
    detail: dict[str, Any] | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {"kind": kind, "answer": answer, "error": error, "detail": detail or {}}
    event["usage"] = usage if usage is not None else ({} if kind == "fusion" else {"total_tokens": 10, "calls": 1})
    if layer is not None:
        event["layer"] = layer
    if agent is not None:
        event["agent"] = agent
    return event


def row(
    i: int,
    gold: str,
    strict: str | None,
    flexible: str | None,
    tokens: tuple[int, int] = (100, 20),
    calls: int = 1,
    latency: float = 1.0,
    tr: list[dict[str, Any]] | None = None,
    *,
    kind: str | None = None,
    correct: bool | None = None,
) -> ResultRow:
    return ResultRow(
        problem_id=f"p-{i}", idx=i, question=f"question {i}", gold=gold, prediction=f"#### {strict}",
        answer_strict=strict, answer_flexible=flexible,
        correct_strict=strict == gold if correct is None else correct,
        correct_flexible=flexible == gold if correct is None else correct, prompt_tokens=tokens[0],
        completion_tokens=tokens[1], calls=calls, latency_s=latency, error_kind=kind,
        error=f"{kind}!" if kind else None, trace=tr or [],
    )  # fmt: skip


def vote(answer: str) -> dict[str, Any]:
    return ev("solve", "solve.vote", answer, kind="fusion")


def team_rows() -> list[ResultRow]:
    """Three problems: 1 right strictly, 2 flexibly, 1 timeout; flagged replies in two rows."""
    return [
        row(0, "18", "18", "18", (1000, 200), 3, 1.0,
            [ev("solve", "a", "18", detail={"finish_reason": "length"}), ev("solve", "b", "5"), vote("18")]),
        row(1, "7", None, "7", (2000, 400), 3, 2.0,
            [ev("solve", "a", "7", detail={"empty": True}), ev("solve", "b", "7", detail={"fallback": True}),
             vote("7")]),
        row(2, "4", None, None, (500, 0), 2, 9.0,
            [ev("solve", "a", None, error="timeout: slow", detail={"empty": True})], kind="timeout"),
    ]  # fmt: skip


TEAM_META = {
    "suite": "gsm8k",
    "split": "test",
    "team": "duo",
    "model": None,
    "simulated": False,
    "wall_s": 33.4,
    "n": 10,
    "started_at": 1_700_000_000.0,
    "concurrency": 8,
    "endpoints": [{"url": URL, "notes": ["ignored n", "sent no usage"]}],
}


def store_run(folder: Path, rows: list[ResultRow], **meta: Any) -> Path:
    store = ResultStore(folder / "results.sqlite")
    for r in rows:
        store.add(r)
    store.set_meta(**meta)
    store.close()
    return folder


def run_with_baseline(tmp_path: Path) -> Path:
    """The team run above, and a self-consistency baseline (4 samples) on all ten problems of the suite.

    On the three shared problems the baseline is right on p-0 (as the team) and p-1 (the team is not).
    """
    run = store_run(tmp_path / "run", team_rows(), **TEAM_META)
    base = [row(i, "1", "1" if i < 2 or i >= 6 else "2", None, (250, 1000), 1, 0.5, correct=i < 2 or i >= 6)
            for i in range(10)]  # fmt: skip
    store_run(run / "baseline", base, suite="gsm8k", team="self-consistency", samples=4, matched_tokens=1366.7)
    return run


EXPECTED_TERMINAL = """\
         gsm8k · duo · team models
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┓
┃ metric              ┃              value ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━┩
│ accuracy (strict)   │  33.3% [6.1, 79.2] │
│ accuracy (flexible) │ 66.7% [20.8, 93.9] │
│ problems            │            3 of 10 │
│ tokens / problem    │              1,367 │
│ calls / problem     │               2.67 │
│ latency p50 / p99   │    2.00 s / 8.86 s │
│ errors              │                  1 │
│ wall time           │             33.4 s │
└─────────────────────┴────────────────────┘
 team vs self-consistency with 4 samples (0.92x the team's tokens)
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━┳━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓
┃ run                 ┃  n ┃             strict ┃ tokens / problem ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩
│ duo                 │  3 │  33.3% [6.1, 79.2] │            1,367 │
│ self-consistency x4 │ 10 │ 60.0% [31.3, 83.2] │            1,250 │
└─────────────────────┴────┴────────────────────┴──────────────────┘
self-consistency x4 - duo: +33.3 points (95% CI -12.6 to +60.5) on 3
shared problems; McNemar exact p = 1; right only in self-consistency
                       x4: 1, only in duo: 0
    errors by kind
┏━━━━━━━━━┳━━━━━━━━━━┓
┃ kind    ┃ problems ┃
┡━━━━━━━━━╇━━━━━━━━━━┩
│ timeout │        1 │
└─────────┴──────────┘
                   per agent
┏━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┓
┃ agent ┃ accuracy ┃ problems ┃ calls ┃ tokens ┃
┡━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━┩
│ a     │    66.7% │        3 │     3 │     30 │
│ b     │    50.0% │        2 │     2 │     20 │
└───────┴──────────┴──────────┴───────┴────────┘
                        per layer
┏━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┓
┃ layer ┃ accuracy ┃ from   ┃ problems ┃ calls ┃ tokens ┃
┡━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━┩
│ solve │    66.7% │ fusion │        3 │     5 │     50 │
└───────┴──────────┴────────┴──────────┴───────┴────────┘
   replies to look at (empty, cut by
         max_tokens, fallbacks)
┏━━━━━━━┳━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━┓
┃ agent ┃ empty ┃ truncated ┃ fallback ┃
┡━━━━━━━╇━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━┩
│ a     │     2 │         1 │        0 │
│ b     │     0 │         0 │        1 │
└───────┴───────┴───────────┴──────────┘
note: http://127.0.0.1:8000/v1: ignored n
note: http://127.0.0.1:8000/v1: sent no usage
"""


def test_the_terminal_report_of_a_run_with_a_baseline_reads_line_for_line(tmp_path: Path) -> None:
    # Hand-checked: Wilson 1/3 = [6.1, 79.2], 2/3 = [20.8, 93.9], 6/10 = [31.3, 83.2]; 4100 tokens / 3 problems;
    # latencies 1, 2, 9 s: p99 = 2 + 0.98 * 7; agent a right on 18 and 7, b wrong on 18 (said 5).
    report = write_report(run_with_baseline(tmp_path))
    # Compared line by line without the padding rich puts after a centred title.
    assert [line.rstrip() for line in render_terminal(report).splitlines()] == EXPECTED_TERMINAL.splitlines()


def test_the_baseline_entry_in_report_json_holds_the_paired_difference(tmp_path: Path) -> None:
    run = run_with_baseline(tmp_path)
    write_report(run)
    base = json.loads((run / "report.json").read_text(encoding="utf-8"))["baseline"]
    assert (base["team"], base["samples"], base["n"], base["run_dir"]) == ("self-consistency", 4, 10,
                                                                          str(run / "baseline"))  # fmt: skip
    assert base["accuracy"] == {"strict": 0.6, "flexible": 0.6}
    assert base["paired"]["n"] == 3 and (base["paired"]["only_a"], base["paired"]["only_b"]) == (0, 1)
    assert base["paired"]["diff"] == pytest.approx(1 / 3, abs=1e-6) and base["paired"]["mcnemar_p"] == 1.0
    assert (base["token_ratio"], base["equal_tokens"]) == (0.915, True)  # 1250 / 1366.7


def test_a_baseline_far_from_the_teams_tokens_is_not_called_an_equal_token_comparison(tmp_path: Path) -> None:
    run = store_run(tmp_path / "run", team_rows(), **TEAM_META)
    base = [row(i, "1", "1", "1", (250, 1000)) for i in range(3)]  # 1250 tokens a problem
    store_run(run / "baseline", base, suite="gsm8k", team="self-consistency", samples=13, matched_tokens=400.0)
    report = write_report(run)
    assert (report["baseline"]["token_ratio"], report["baseline"]["equal_tokens"]) == (3.125, False)
    text = render_terminal(report)
    assert "with 13 samples (3.12x the team's tokens)" in text
    assert "note: the baseline spent 3.12x the team's tokens per problem" in text
    assert "NOT an equal-token comparison" in text
    assert "3.12x the team&#x27;s: NOT equal" in (run / "report.html").read_text(encoding="utf-8")


def test_a_baseline_with_no_shared_problems_has_a_table_but_no_paired_line(tmp_path: Path) -> None:
    run = store_run(tmp_path / "run", team_rows(), **TEAM_META)
    other = [row(i + 50, "1", "1", "1") for i in range(2)]
    store_run(run / "baseline", other, suite="gsm8k", team="self-consistency", samples=2)
    report = write_report(run)
    assert report["baseline"]["paired"] is None
    text = render_terminal(report)
    assert "team vs self-consistency with 2 samples (at the team's tokens)" in text  # a store without the ratio
    assert "│ self-consistency x2 │ 2 │ 100.0% [34.2, 100.0] │              120 │" in text
    assert "points" not in text and "McNemar" not in text


def test_report_json_has_every_key_in_order_and_the_runs_settings() -> None:
    report = build_report(team_rows(), TEAM_META)
    assert list(report) == [
        "suite", "split", "team", "model", "simulated", "started_at", "concurrency", "wall_s", "n", "planned",
        "accuracy", "ci95", "correct", "answered", "tokens", "calls", "calls_per_problem", "errors",
        "errors_by_kind", "latency_s", "per_agent", "per_layer", "replies", "endpoints", "meta",
    ]  # fmt: skip
    assert (report["split"], report["started_at"], report["concurrency"], report["planned"]) == (
        "test", 1_700_000_000.0, 8, 10)  # fmt: skip
    assert report["endpoints"] == [{"url": URL, "notes": ["ignored n", "sent no usage"]}]
    assert report["meta"] == TEAM_META and report["meta"] is not TEAM_META
    # Strictly, only p-0 gave an answer; flexibly p-0 and p-1.
    assert report["answered"] == {"strict": 1, "flexible": 2}
    assert report["replies"] == {
        "empty": 2, "truncated": 1, "fallback": 1,
        "per_agent": {
            "a": {"empty": 2, "truncated": 1, "fallback": 0}, "b": {"empty": 0, "truncated": 0, "fallback": 1},
        },
    }  # fmt: skip


def test_a_store_without_the_simulated_flag_is_not_reported_as_simulated() -> None:
    report = build_report([row(0, "1", "1", "1")], {"suite": "s", "team": "t"})
    assert report["simulated"] is False and report["endpoints"] == [] and report["split"] is None


def test_fractions_are_rounded_to_six_digits() -> None:
    report = build_report([row(0, "1", "1", "1"), row(1, "1", "2", "2"), row(2, "1", "2", "2")], {})
    assert report["accuracy"]["strict"] == 0.333333
    assert report["ci95"]["strict"] == [0.061492, 0.79234]


def test_errors_by_kind_list_the_commonest_first_then_by_name() -> None:
    kinds = ["timeout", "http_500", "timeout", "parse", "http_500", "timeout"]
    rows = [row(i, "1", None, None, kind=k) for i, k in enumerate(kinds)]
    report = build_report(rows, {})
    assert list(report["errors_by_kind"].items()) == [("timeout", 3), ("http_500", 2), ("parse", 1)]
    tie = build_report([row(0, "1", None, None, kind="timeout"), row(1, "1", None, None, kind="http_500")], {})
    assert list(tie["errors_by_kind"]) == ["http_500", "timeout"]


def test_one_problem_has_an_interval() -> None:
    assert wilson_interval(1, 1) == [0.206549, 1.0]
    assert wilson_interval(0, 1) == [0.0, 0.793451]


def test_an_agent_after_a_fusion_event_is_still_scored() -> None:
    tr = [ev("first", "first.vote", "3", kind="fusion"), ev("second", "b", "3")]
    agents = build_report([row(0, "3", "3", "3", tr=tr)], {})["per_agent"]
    assert agents["b"]["accuracy"] == 1.0 and agents["b"]["calls"] == 1


def test_events_without_a_layer_are_grouped_under_a_question_mark() -> None:
    tr = [ev(None, "a", "3"), ev(None, "b", "3")]
    layers = build_report([row(0, "3", "3", "3", tr=tr)], {})["per_layer"]
    assert list(layers) == ["?"]
    assert (layers["?"]["accuracy"], layers["?"]["calls"], layers["?"]["source"]) == (1.0, 2, "vote")
    assert layers["?"]["agent_accuracy"] == 1.0


def test_agent_events_without_a_name_are_grouped_under_a_question_mark() -> None:
    tr = [ev("r", None, "3"), ev("r", None, "4"), ev("r", "b", "3")]  # a hand-made trace
    agents = build_report([row(0, "3", "3", "3", tr=tr)], {})["per_agent"]
    assert list(agents) == ["?", "b"]
    assert (agents["?"]["calls"], agents["?"]["accuracy"]) == (2, 0.0)  # the last answer counts: 4


def test_a_round_where_no_agent_answered_counts_as_unanswered() -> None:
    tr = [ev("r", "a", None, error="timeout: slow"), ev("r", "b", None, error="timeout: slow")]
    layer = build_report([row(0, "3", None, None, tr=tr, kind="timeout")], {})["per_layer"]["r"]
    assert (layer["accuracy"], layer["answered"], layer["errors"]) == (0.0, 0, 2)


def test_answers_are_matched_to_gold_as_numbers_and_text_is_never_a_match() -> None:
    tr = [ev("r", "a", "1000"), ev("r", "b", "abc")]
    agents = build_report([row(0, "1,000", "1000", "1000", tr=tr)], {})["per_agent"]
    assert agents["a"]["correct"] == 1 and agents["b"]["correct"] == 0
    agents = build_report([row(0, "xyz", None, None, tr=[ev("r", "b", "abc")])], {})["per_agent"]
    assert agents["b"]["correct"] == 0


def test_an_event_without_calls_in_its_usage_counts_no_call() -> None:
    tr = [ev("r", "a", "3", usage={"total_tokens": 7}), ev("r", "b", "3", usage={"calls": 2})]
    agents = build_report([row(0, "3", "3", "3", tr=tr)], {})["per_agent"]
    assert (agents["a"]["calls"], agents["a"]["tokens"], agents["b"]["calls"], agents["b"]["tokens"]) == (0, 7, 2, 0)


def test_colour_is_only_emitted_when_asked_for() -> None:
    report = build_report(team_rows(), TEAM_META)
    assert "\x1b[" in render_terminal(report, color=True)
    assert "\x1b[" not in render_terminal(report)


def test_the_tables_fit_the_width_given_and_default_to_100_columns() -> None:
    tr = [ev("solve", "agent-with-a-very-long-name-" + "x" * 150, "3")]
    report = build_report([row(0, "3", "3", "3", tr=tr)], {"suite": "s", "team": "t", "model": "m"})
    widths = [len(line) for line in render_terminal(report).splitlines()]
    assert max(widths) == 100
    assert max(len(line) for line in render_terminal(report, width=60).splitlines()) == 60


def test_a_simulated_run_starts_with_the_banner_and_a_real_one_with_its_title() -> None:
    report = build_report([row(0, "3", "3", "3")], {"suite": "s", "team": "t", "model": "m", "simulated": False})
    assert render_terminal(report).splitlines()[0].strip() == "s · t · m"


def test_a_report_written_before_replies_were_counted_still_renders() -> None:
    report = build_report(team_rows(), TEAM_META)
    del report["replies"]
    text = render_terminal(report)
    assert "per layer" in text and "replies to look at" not in text


def test_write_report_makes_missing_folders_and_writes_readable_utf8_json(tmp_path: Path) -> None:
    run = store_run(tmp_path / "run", team_rows(), **(TEAM_META | {"team": "équipe·δ"}))
    out = tmp_path / "deep" / "er" / "out"
    report = write_report(run / "results.sqlite", out)
    text = (out / "report.json").read_text(encoding="utf-8")
    assert text.startswith('{\n  "suite": "gsm8k",\n  "split": "test",\n  "team": "équipe·δ",\n')
    assert text.endswith("\n}\n") and json.loads(text) == report
    assert "équipe·δ" in (out / "report.html").read_text(encoding="utf-8")
    assert not (run / "report.json").exists()


def test_an_in_memory_store_is_written_where_asked_and_has_no_baseline(tmp_path: Path) -> None:
    store = ResultStore(":memory:")
    for r in team_rows():
        store.add(r)
    store.set_meta(**TEAM_META)
    with pytest.raises(ConfigError, match=r"^write_report: an in-memory store needs an out_dir$"):
        write_report(store)
    report = write_report(store, tmp_path / "mem")
    assert "baseline" not in report and report["n"] == 3
    assert json.loads((tmp_path / "mem" / "report.json").read_text())["n"] == 3


def test_an_in_memory_store_never_takes_a_baseline_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_run(tmp_path / "baseline", [row(0, "1", "1", "1")], team="self-consistency", samples=2)
    monkeypatch.chdir(tmp_path)  # "." holds a baseline: it belongs to no in-memory run
    store = ResultStore(":memory:")
    store.add(row(0, "1", "1", "1"))
    assert "baseline" not in write_report(store, tmp_path / "out")


def test_a_run_without_a_baseline_folder_has_no_baseline_entry(tmp_path: Path) -> None:
    report = write_report(store_run(tmp_path / "run", team_rows(), **TEAM_META))
    assert "baseline" not in report and "team vs" not in render_terminal(report)
