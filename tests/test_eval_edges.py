"""An eval run at its edges: live progress, failed problems as rows, bad arguments, who owns the store."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ConfigError, HyperteamError, ModelError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import Progress, evaluate
from hyperteam.evals.store import ResultStore
from hyperteam.models.runtime import Runtime
from hyperteam.testing import FunctionModel


class Error(HyperteamError):
    """A project error whose name is only the suffix."""


class QuotaError(HyperteamError):
    pass


FAILURES: dict[str, BaseException] = {
    "model": ModelError("upstream down", kind="http_500"),
    "config": ConfigError("no such tool"),
    "quota": QuotaError("out of quota"),
    "bare": Error("bare"),
    "base": HyperteamError("base"),
    "bug": ValueError("x" * 5000),
}


def _model() -> FunctionModel:
    """Answers '#### 5' to problems about 5, '#### 7' otherwise, and raises the error a question names."""

    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        for name, exc in FAILURES.items():
            if f"fail:{name}" in user:
                raise exc
        return "I count.\n#### 5" if "five" in user else "I count.\n#### 7"

    return FunctionModel(reply)


def _run(problems: list[Problem], **kw: object) -> dict:
    return asyncio.run(evaluate(ht.load_team("single"), problems, model=_model(), **kw))  # type: ignore[arg-type]


def test_progress_counts_each_finished_problem_its_correct_answers_errors_and_tokens(tmp_path: Path):
    problems = [
        Problem("p1", "five?", "5"),
        Problem("p2", "seven, not five?", "5"),  # answered 5: correct
        Problem("p3", "seven?", "5"),  # answered 7: wrong
        Problem("p4", "fail:model", "5"),
        Problem("p5", "fail:config", "5"),
    ]
    seen: list[tuple[int, int, int, int, int]] = []

    def progress(p: Progress) -> None:
        seen.append((p.total, p.done, p.correct, p.errors, p.tokens))

    _run(problems, store=tmp_path / "r.sqlite", concurrency=1, progress=progress)
    rows = ResultStore(tmp_path / "r.sqlite").rows()
    tokens = [r.prompt_tokens + r.completion_tokens for r in rows]
    assert all(r.completion_tokens > 0 for r in rows[:3])
    assert seen == [
        (5, 1, 1, 0, tokens[0]),
        (5, 2, 2, 0, sum(tokens[:2])),
        (5, 3, 2, 0, sum(tokens[:3])),
        (5, 4, 2, 1, sum(tokens)),
        (5, 5, 2, 2, sum(tokens)),
    ]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("fail:model", "http_500"),
        ("fail:config", "config"),
        ("fail:quota", "quota"),
        ("fail:bare", "error"),
        ("fail:base", "hyperteam"),
        ("fail:bug", "internal:ValueError"),
    ],
)
def test_a_failed_problem_is_a_row_with_its_error_kind_and_nothing_else(tmp_path: Path, question: str, kind: str):
    report = _run([Problem("p1", question, "5")], store=tmp_path / "r.sqlite")
    [row] = ResultStore(tmp_path / "r.sqlite").rows()
    assert row.error_kind == kind and row.error
    assert (row.prediction, row.answer_strict, row.answer_flexible) == ("", None, None)
    assert (row.correct_strict, row.correct_flexible) == (False, False)
    assert (row.prompt_tokens, row.completion_tokens, row.calls, row.latency_s) == (0, 0, 0, 0.0)
    assert report["accuracy"] == {"strict": 0.0, "flexible": 0.0}


def test_a_long_error_is_kept_to_its_first_2000_characters(tmp_path: Path):
    _run([Problem("p1", "fail:bug", "5")], store=tmp_path / "r.sqlite")
    [row] = ResultStore(tmp_path / "r.sqlite").rows()
    assert row.error == "x" * 2000


@pytest.mark.parametrize("concurrency", [0, -1])
def test_a_concurrency_below_one_is_a_config_error(concurrency: int):
    with pytest.raises(ConfigError, match=rf"^concurrency must be >= 1, got {concurrency}$"):
        _run([Problem("p1", "five?", "5")], concurrency=concurrency)


def test_one_problem_at_a_time_is_allowed_and_recorded():
    report = _run([Problem("p1", "five?", "5"), Problem("p2", "seven?", "7")], concurrency=1)
    assert report["concurrency"] == 1 and report["accuracy"]["strict"] == 1.0


def test_the_default_concurrency_and_suite_name_are_in_the_report():
    before = time.time()
    report = _run([Problem("p1", "five?", "5")])
    assert report["concurrency"] == 64 and report["suite"] == "custom"
    assert before <= report["started_at"] <= time.time()


def test_duplicate_problem_ids_are_a_config_error():
    with pytest.raises(ConfigError, match=r"^problem ids must be unique$"):
        _run([Problem("p1", "five?", "5"), Problem("p1", "seven?", "7")])


def test_a_store_handed_in_stays_open_for_its_owner(tmp_path: Path):
    store = ResultStore(tmp_path / "r.sqlite")
    _run([Problem("p1", "five?", "5")], store=store)
    assert len(store) == 1 and store.rows()[0].correct_strict  # still usable: evaluate did not close it
    store.close()


def test_a_run_without_a_store_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    report = _run([Problem("p1", "five?", "5")])
    assert report["accuracy"]["strict"] == 1.0 and list(tmp_path.iterdir()) == []


def test_the_run_is_announced_with_its_team_suite_and_what_is_left(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    problems = [Problem("p1", "five?", "5"), Problem("p2", "seven?", "7")]
    with caplog.at_level(logging.INFO, logger="hyperteam.evals.runner"):
        _run(problems[:1], store=tmp_path / "r.sqlite", suite="mini")
        _run(problems, store=tmp_path / "r.sqlite", suite="mini", resume=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "hyperteam.evals.runner"]
    assert lines == [
        "eval single on mini: 1 problems, 0 already done",
        "eval single on mini: 2 problems, 1 already done",
    ]


def test_a_resumed_run_counts_the_stored_problems_as_done(tmp_path: Path):
    problems = [Problem("p1", "five?", "5"), Problem("p2", "seven?", "7"), Problem("p3", "five?", "5")]
    _run(problems[:1], store=tmp_path / "r.sqlite")
    seen: list[tuple[int, int]] = []
    _run(problems, store=tmp_path / "r.sqlite", resume=True, progress=lambda p: seen.append((p.total, p.done)))
    assert seen == [(3, 2), (3, 3)]


# -- online adaptation (--adapt) -------------------------------------------------------------------


def _adaptive_team() -> ht.LayeredTeam:
    agents = [ht.Agent(name=n) for n in ("bad1", "bad2", "good")]
    return ht.LayeredTeam([ht.Layer("solve", agents=agents, fusion={"name": "adaptive", "top_k": 1})])


def _good_and_bad() -> FunctionModel:
    """Agent 'good' gives the gold answer (named in the question); the other two agree on a wrong one."""

    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        gold = user.split("gold=")[1].split()[0]
        return f"#### {gold}" if "You are good" in user else "#### 999"

    return FunctionModel(reply)


PROBLEMS = [Problem(f"p{i}", f"Problem {i}: gold={i + 10} ?", str(i + 10)) for i in range(3)]


def _adapt(team: ht.LayeredTeam, problems: list[Problem], store: Path, **kw: object) -> dict:
    return asyncio.run(
        evaluate(team, problems, model=_good_and_bad(), store=store, concurrency=1, adapt=True, **kw)  # type: ignore[arg-type]
    )


def test_adapt_learns_after_each_answer_so_only_the_first_problem_is_missed(tmp_path: Path):
    fixed = asyncio.run(evaluate(_adaptive_team(), PROBLEMS, model=_good_and_bad(), concurrency=1))
    assert fixed["accuracy"]["strict"] == 0.0  # the first agent is chosen while scores are equal
    _adapt(_adaptive_team(), PROBLEMS, tmp_path / "r.sqlite")
    rows = ResultStore(tmp_path / "r.sqlite").rows()
    assert [r.correct_strict for r in rows] == [False, True, True]


def test_a_resumed_adaptive_run_learns_again_from_the_stored_problems(tmp_path: Path):
    store = tmp_path / "r.sqlite"
    _adapt(_adaptive_team(), PROBLEMS[:1], store)
    _adapt(_adaptive_team(), PROBLEMS, store, resume=True)  # a fresh team: it must replay p0 first
    assert [r.correct_strict for r in ResultStore(store).rows()] == [False, True, True]


def test_adapt_on_a_team_without_an_adaptive_fusion_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^adapt: team 'single' has no 'adaptive' fusion to train$"):
        _run([Problem("p1", "five?", "5")], adapt=True)


# -- what the report says about the run ------------------------------------------------------------


def test_the_report_names_the_model_object_and_the_planned_size():
    named = FunctionModel(lambda request: "#### 5", name="fm-7")
    report = asyncio.run(evaluate(ht.load_team("single"), [Problem("p1", "five?", "5")], model=named))
    assert report["model"] == "fm-7" and report["planned"] == 1 and report["simulated"] is False

    class Nameless:
        async def chat(self, request: ht.ChatRequest, *, sample_index: int = 0) -> ht.ChatResult:
            return await named.chat(request, sample_index=sample_index)

    report = asyncio.run(evaluate(ht.load_team("single"), [], model=Nameless()))  # type: ignore[arg-type]
    assert report["model"] == "Nameless"


def test_a_team_on_the_simulator_is_reported_as_simulated_whatever_the_run_model():
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a")])], model="sim:0.9")
    assert asyncio.run(evaluate(team, []))["simulated"] is True
    agent_sim = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a", model="sim:0.9")])])
    assert asyncio.run(evaluate(agent_sim, []))["simulated"] is True


def test_wall_time_adds_up_over_a_resumed_run(tmp_path: Path):
    async def slow(request: ht.ChatRequest) -> str:
        await asyncio.sleep(0.3)
        return "#### 5"

    store = tmp_path / "r.sqlite"
    team = ht.load_team("single")
    problems = [Problem("p1", "five?", "5"), Problem("p2", "five?", "5")]
    first = asyncio.run(evaluate(team, problems[:1], model=FunctionModel(slow), store=store))
    assert 0.3 <= first["wall_s"] < 1.0
    second = asyncio.run(evaluate(team, problems, model=_model(), store=store, resume=True))
    assert first["wall_s"] <= second["wall_s"] < first["wall_s"] + 0.5


def test_an_adaptive_run_goes_on_past_a_failed_problem(tmp_path: Path):
    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        if "Problem 1:" in user:
            raise ModelError("down", kind="http_503")
        return _good_and_bad().fn(request)  # type: ignore[attr-defined]

    store = tmp_path / "r.sqlite"
    asyncio.run(
        evaluate(_adaptive_team(), PROBLEMS, model=FunctionModel(reply), store=store, concurrency=1, adapt=True)
    )
    rows = ResultStore(store).rows()
    assert [r.error_kind for r in rows] == [None, "http_503", None]
    assert [r.correct_strict for r in rows] == [False, False, True]  # learned from p0, nothing from p1


def test_a_runtime_handed_in_is_the_one_used_and_stays_open():
    closed: list[bool] = []

    class Resource:
        async def aclose(self) -> None:
            closed.append(True)

    async def go() -> dict:
        rt = Runtime()
        rt.own(Resource())
        rt._models["house-model"] = _model()  # what the runtime resolves the spec to (a test double)
        report = await evaluate(ht.load_team("single"), [Problem("p1", "five?", "5")], model="house-model", runtime=rt)
        assert closed == []  # evaluate did not close the caller's runtime
        await rt.aclose()
        return report

    report = asyncio.run(go())
    assert report["accuracy"]["strict"] == 1.0 and closed == [True]
