"""The simplest baseline at equal cost: self-consistency with as many samples as the team spends tokens.

Multi-agent teams are rarely worth their tokens against self-consistency
(one solver, k samples at temperature 0.7, majority vote) given the same
budget. ``hyperteam eval SUITE --team T --baseline self-consistency`` runs
that comparison for the user: after the team's run, a short pilot (one
sample on the first few problems) measures the solver's prompt and
completion tokens, and

    k = round((team tokens per problem - pilot prompt tokens) / pilot completion tokens per sample)

at least 1, at most 32: the samples of one request share its prompt, so the
prompt is paid once. The baseline runs in ``RUN/baseline/`` (resumable like
any run), and its summary, with the paired difference against the team, goes
into the team's ``report.json`` under ``baseline`` and on its plot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.store import ResultRow, ResultStore

__all__ = ["BASELINES", "baseline_summary", "matched_samples", "paired_on_shared", "run_baseline"]

log = logging.getLogger(__name__)

BASELINES = ("self-consistency",)
BASELINE_DIR = "baseline"
PILOT_PROBLEMS = 10
MAX_SAMPLES = 32  # Agent.samples' upper bound


def matched_samples(team_tokens: float, prompt_tokens: float, completion_tokens: float) -> int:
    """The sample count whose tokens per problem come closest to ``team_tokens``, in [1, 32].

    Args:
        team_tokens: the team's mean tokens per problem.
        prompt_tokens: the solver's mean prompt tokens per request.
        completion_tokens: the solver's mean completion tokens per sample.

    Example:
        >>> matched_samples(930, 130, 160)  # (930 - 130) / 160 = 5
        5
        >>> matched_samples(100, 130, 160)  # even one sample costs more: still one
        1
    """
    if completion_tokens <= 0:
        return 1
    return max(1, min(MAX_SAMPLES, round((team_tokens - prompt_tokens) / completion_tokens)))


async def run_baseline(
    name: str,
    problems: Sequence[Problem],
    *,
    run_dir: str | Path,
    model: Any,
    suite: str,
    concurrency: int = 64,
    resume: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Runs the equal-token baseline for the team run in ``run_dir`` (which must be finished).

    Returns:
        The baseline's report (see ``hyperteam.evals.report.build_report``).

    Raises:
        ConfigError: an unknown baseline, or a team run with no problems.
    """
    from hyperteam.evals.report import store_path
    from hyperteam.evals.runner import evaluate
    from hyperteam.topologies.builtin import self_consistency

    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    team_store = ResultStore(store_path(run_dir))
    try:
        team_rows = team_store.rows()
    finally:
        team_store.close()
    if not team_rows:
        raise ConfigError(f"{run_dir} holds no results: nothing to match the baseline's tokens to")
    team_tokens = sum(r.prompt_tokens + r.completion_tokens for r in team_rows) / len(team_rows)
    folder = Path(run_dir) / BASELINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultStore(folder / "results.sqlite")
    try:
        samples = store.meta().get("samples")
        if samples is None or not resume:
            pilot = await evaluate(self_consistency(1), problems[:PILOT_PROBLEMS], model=model, suite=suite,
                                   concurrency=concurrency)  # fmt: skip
            calls = max(1, pilot["calls"])
            prompt, completion = pilot["tokens"]["prompt"] / calls, pilot["tokens"]["completion"] / calls
            samples = matched_samples(team_tokens, prompt, completion)
            log.info("baseline %s: %d samples match %.0f tokens per problem", name, samples, team_tokens)
        report = await evaluate(self_consistency(int(samples)), problems, concurrency=concurrency, store=store,
                                resume=resume, model=model, suite=suite, progress=progress)  # fmt: skip
        store.set_meta(samples=int(samples), matched_tokens=team_tokens)
    finally:
        store.close()
    return report


def paired_on_shared(a_rows: Sequence[ResultRow], b_rows: Sequence[ResultRow]) -> dict[str, Any] | None:
    """``compare_paired`` (strict) on the problems both runs hold (same id and question), as a dict; None if none."""
    from hyperteam.evals.stats import compare_paired

    b_by_key = {(r.problem_id, r.question): r.correct_strict for r in b_rows}
    pairs = [(r.correct_strict, b_by_key[(r.problem_id, r.question)]) for r in a_rows
             if (r.problem_id, r.question) in b_by_key]  # fmt: skip
    if not pairs:
        return None
    return compare_paired([a for a, _ in pairs], [b for _, b in pairs]).as_dict()


def baseline_summary(run_dir: str | Path, team_rows: Sequence[ResultRow]) -> dict[str, Any] | None:
    """The ``baseline`` entry of a team's report, or None when the run has no baseline.

    Holds the baseline's team, samples, n, accuracies with intervals, tokens
    per problem, and ``paired``: the baseline minus the team on the problems
    both answered, with its paired 95% interval and McNemar's exact p.
    """
    from hyperteam.evals.report import build_report

    path = Path(run_dir) / BASELINE_DIR / "results.sqlite"
    if not path.is_file():
        return None
    store = ResultStore(path)
    try:
        rows, meta = store.rows(), store.meta()
    finally:
        store.close()
    report = build_report(rows, meta)
    paired = paired_on_shared(team_rows, rows)
    return {
        "team": meta.get("team"),
        "samples": meta.get("samples"),
        "matched_tokens": meta.get("matched_tokens"),
        "run_dir": str(Path(run_dir) / BASELINE_DIR),
        "n": report["n"],
        "accuracy": report["accuracy"],
        "ci95": report["ci95"],
        "tokens": report["tokens"],
        "calls_per_problem": report["calls_per_problem"],
        "errors": report["errors"],
        "paired": paired,
    }
