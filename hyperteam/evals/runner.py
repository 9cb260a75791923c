"""Running a team over a suite: concurrent, stored row by row, resumable.

``evaluate`` is what ``hyperteam eval`` calls. Each problem's result is
written to the store the moment it finishes, so a run killed at any moment
resumes (``resume=True``) with only the missing problems, and the final
numbers equal an uninterrupted run's. A problem whose calls failed after
retries is a result too: stored with its error kind, counted separately.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperteam.agents.parsing import extract_flexible, extract_strict
from hyperteam.errors import ConfigError, HyperteamError, ModelError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.store import ResultRow, ResultStore
from hyperteam.models.runtime import Runtime
from hyperteam.models.spec import is_simulated
from hyperteam.models.types import ChatModel
from hyperteam.topologies.team import Team

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Progress:
    """Running totals, handed to the progress callback after every finished problem."""

    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0
    tokens: int = 0
    started: float = 0.0

    def add(self, row: ResultRow) -> None:
        """Counts one finished problem."""
        self.done += 1
        self.correct += row.correct_strict
        self.errors += row.error_kind is not None
        self.tokens += row.prompt_tokens + row.completion_tokens

    @property
    def rate(self) -> float:
        """Problems per second so far."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def score(problem: Problem, idx: int, result: Any = None, error: BaseException | None = None) -> ResultRow:
    """The stored row for one finished problem: a team result, or the error that ended it."""
    base = {"problem_id": problem.id, "idx": idx, "question": problem.question, "gold": problem.answer}
    if error is not None:
        kind = error.kind if isinstance(error, ModelError) else _error_kind(error)
        return ResultRow(
            **base, prediction="", answer_strict=None, answer_flexible=None, correct_strict=False,
            correct_flexible=False, prompt_tokens=0, completion_tokens=0, calls=0, latency_s=0.0,
            error_kind=kind, error=str(error)[:2000],
        )  # fmt: skip
    text, u = result.text, result.usage
    strict, flexible = extract_strict(text), extract_flexible(text)
    return ResultRow(
        **base, prediction=text, answer_strict=strict, answer_flexible=flexible,
        correct_strict=strict == problem.answer, correct_flexible=flexible == problem.answer,
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, calls=u.calls,
        latency_s=result.wall_s, trace=[ev.to_dict() for ev in result.trace],
    )  # fmt: skip


def _error_kind(error: BaseException) -> str:
    if isinstance(error, HyperteamError):
        return type(error).__name__.removesuffix("Error").lower() or "error"
    return f"internal:{type(error).__name__}"


async def evaluate(
    team: Team,
    problems: Sequence[Problem],
    *,
    concurrency: int = 64,
    store: str | Path | ResultStore | None = None,
    resume: bool = False,
    model: str | ChatModel | None = None,
    runtime: Runtime | None = None,
    suite: str = "custom",
    progress: Callable[[Progress], None] | None = None,
    adapt: bool = False,
) -> dict[str, Any]:
    """Runs ``team`` on every problem and returns the report (see :mod:`hyperteam.evals.report`).

    Args:
        team: the team to evaluate.
        problems: the suite, e.g. ``ht.datasets.load("gsm8k", limit=100)``.
        concurrency: problems in flight, and requests in flight per endpoint
            when no runtime is given.
        store: a SQLite file (or store) that gets one row per finished problem.
        resume: finish a run already in ``store``; without it a non-empty store is an error.
        model: the model for agents that name none.
        runtime: the clients to use; default: a new one with ``max_concurrency=concurrency``.
        suite: the suite's name, for the report.
        progress: called after every finished problem.
        adapt: train the team's ``adaptive`` fusions online, in place: each problem is
            scored first, then learned from (prequential), so no reported answer comes
            from a fusion that learned from that problem. With ``resume``, the stored
            problems are learned from again, in order, before the rest run.

    Raises:
        ConfigError: bad arguments, or a store that holds another run (or results without ``resume``).

    Example:
        >>> report = await ht.evaluate(team, ht.datasets.load("demo"), store="runs/demo.sqlite")  # doctest: +SKIP
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ConfigError("problem ids must be unique")
    owned_store = not isinstance(store, ResultStore)
    db = store if isinstance(store, ResultStore) else ResultStore(store or ":memory:")
    try:
        meta = _check_meta(db, team, suite, model, resume, concurrency)
        done = db.done_ids()
        todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
        log.info("eval %s on %s: %d problems, %d already done", team.name, suite, len(problems), len(done))
        learner = _adaptation(team, db) if adapt else None
        started = time.perf_counter()
        await _run(team, todo, db, concurrency, model, runtime, progress, len(problems) - len(todo), learner)
        db.set_meta(wall_s=float(meta.get("wall_s", 0.0)) + time.perf_counter() - started, n=len(problems))
        from hyperteam.evals.report import build_report

        return build_report(db.rows(), db.meta())
    finally:
        if owned_store:
            db.close()


def _adaptation(team: Team, db: ResultStore) -> Any:
    from hyperteam.topologies.adapt import OnlineAdaptation

    learner = OnlineAdaptation(team)
    if not learner:
        raise ConfigError(f"adapt: team {team.name!r} has no 'adaptive' fusion to train")
    for row in sorted(db.rows(), key=lambda r: r.idx):  # a resumed run learns again what it had learned
        if row.error_kind is None:
            learner.replay(row.question, row.gold, row.trace)
    return learner


def _check_meta(db: ResultStore, team: Team, suite: str, model: Any, resume: bool, concurrency: int) -> dict[str, Any]:
    meta = db.meta()
    if meta and len(db) and not resume:
        raise ConfigError(f"{db.path} already holds {len(db)} results: resume it (--resume) or use a new store")
    model_name = model if isinstance(model, str) or model is None else getattr(model, "name", type(model).__name__)
    if meta:
        if (meta.get("team"), meta.get("suite")) != (team.name, suite):
            raise ConfigError(
                f"{db.path} holds a run of team {meta.get('team')!r} on {meta.get('suite')!r}, "
                f"not {team.name!r} on {suite!r}: use a new store"
            )
        return meta
    simulated = is_simulated(model_name, team.model, *(a.model for a in getattr(team, "agents", [])))
    meta = {
        "team": team.name,
        "suite": suite,
        "model": model_name,
        "simulated": simulated,
        "concurrency": concurrency,
        "started_at": time.time(),
        "wall_s": 0.0,
    }
    db.set_meta(**meta)
    return meta


async def _run(
    team: Team,
    todo: list[tuple[int, Problem]],
    db: ResultStore,
    concurrency: int,
    model: Any,
    runtime: Runtime | None,
    progress: Callable[[Progress], None] | None,
    already: int,
    learner: Any = None,
) -> None:
    state = Progress(total=len(todo) + already, done=already, started=time.perf_counter())
    gate = asyncio.Semaphore(concurrency)
    rt = runtime or Runtime(max_concurrency=concurrency)

    async def one(idx: int, problem: Problem) -> None:
        async with gate:
            result = None
            try:
                result = await team.run(problem.question, runtime=rt, model=model)
                row = score(problem, idx, result)
            except Exception as exc:  # every failure is a stored result; the run goes on
                if not isinstance(exc, HyperteamError):
                    log.exception("problem %s failed unexpectedly", problem.id)
                row = score(problem, idx, error=exc)
        db.add(row)
        if learner is not None and result is not None:
            learner.learn(problem.question, problem.answer, result)  # after the row is scored and stored
        state.add(row)
        if progress is not None:
            progress(state)

    try:
        await asyncio.gather(*(one(i, p) for i, p in todo))
    finally:
        endpoints = rt.endpoint_stats()
        if endpoints:  # what each server turned out to be: its capacity and its omissions, for the report
            db.set_meta(endpoints=endpoints)
        if runtime is None:
            await rt.aclose()
