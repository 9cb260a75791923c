"""The simplest baseline at equal cost: self-consistency with as many samples as the team spends tokens.

Multi-agent teams are rarely worth their tokens against self-consistency
(one solver, k samples at temperature 0.7, majority vote) given the same
budget. ``hyperteam eval SUITE --team T --baseline self-consistency`` runs
that comparison for the user: after the team's run, a short pilot (two
samples on each of the first few problems) measures the solver's prompt
tokens per request ``p``, its completion tokens per sample ``c``, and the
prompt tokens each extra sample adds ``q``: none when the server returns all
the samples of one request (``n``), ``p`` when it returns one and the rest are
asked by separate requests (llama.cpp's server). Then

    k = round((team tokens per problem - p + q) / (c + q))

at least 1, at most 32. The baseline runs in ``RUN/baseline/`` (resumable like
any run), and its summary, with the paired difference against the team and
the ratio of its tokens to the team's, goes into the team's ``report.json``
under ``baseline`` and on its plot. The pilot is small and samples vary in
length, so the ratio is measured, not assumed: a baseline more than 25% off
the team's tokens is reported as not an equal-token comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.store import ResultRow, ResultStore

__all__ = [
    "BASELINES",
    "baseline_summary",
    "matched_samples",
    "matched_self_consistency",
    "paired_on_shared",
    "pilot_costs",
    "run_baseline",
    "token_match",
]

log = logging.getLogger(__name__)

BASELINES = ("self-consistency",)
BASELINE_DIR = "baseline"
PILOT_PROBLEMS = 10
PILOT_SAMPLES = 2
MAX_SAMPLES = 32  # Agent.samples' upper bound
EQUAL_TOKENS = (0.8, 1.25)  # the baseline's tokens over the team's within this: an equal-token comparison


def matched_samples(
    team_tokens: float, prompt_tokens: float, completion_tokens: float, prompt_per_extra_sample: float = 0.0
) -> int:
    """The sample count whose tokens per problem come closest to ``team_tokens``, in [1, 32].

    Args:
        team_tokens: the team's mean tokens per problem.
        prompt_tokens: the solver's mean prompt tokens per request.
        completion_tokens: the solver's mean completion tokens per sample.
        prompt_per_extra_sample: prompt tokens each sample after the first adds: 0 when one
            request returns every sample, ``prompt_tokens`` when each sample is its own request.

    Example:
        >>> matched_samples(930, 130, 160)  # (930 - 130) / 160 = 5
        5
        >>> matched_samples(930, 130, 160, prompt_per_extra_sample=130)  # 930 / (160 + 130) = 3.2
        3
        >>> matched_samples(100, 130, 160)  # even one sample costs more: still one
        1
    """
    per_sample = completion_tokens + prompt_per_extra_sample
    if per_sample <= 0:
        return 1
    k = (team_tokens - prompt_tokens + prompt_per_extra_sample) / per_sample
    return max(1, min(MAX_SAMPLES, round(k)))


def token_match(tokens: float, matched: float | None) -> dict[str, Any]:
    """``token_ratio`` (the baseline's tokens per problem over the team's) and ``equal_tokens`` (whether
    that is within ``EQUAL_TOKENS``); both None when there was nothing to match."""
    if not matched:
        return {"token_ratio": None, "equal_tokens": None}
    ratio = tokens / matched
    return {"token_ratio": round(ratio, 3), "equal_tokens": EQUAL_TOKENS[0] <= ratio <= EQUAL_TOKENS[1]}


def pilot_costs(pilot: dict[str, Any]) -> tuple[float, float, float]:
    """``(p, c, q)`` from the report of a pilot run with ``PILOT_SAMPLES`` samples a problem:
    prompt tokens per request, completion tokens per sample, prompt tokens per extra sample."""
    calls, n = max(1, pilot["calls"]), max(1, pilot["n"])
    prompt = pilot["tokens"]["prompt"] / calls
    completion = pilot["tokens"]["completion"] / (n * PILOT_SAMPLES)
    # Requests per problem: 1 when the server returned both samples, 2 when it returned one.
    extra_requests = min(max(calls / n - 1, 0.0), PILOT_SAMPLES - 1) / (PILOT_SAMPLES - 1)
    return prompt, completion, prompt * extra_requests


async def matched_self_consistency(
    team_tokens: float,
    problems: Sequence[Problem],
    *,
    model: Any,
    runtime: Any = None,
    suite: str = "pilot",
    concurrency: int = 64,
) -> tuple[int, dict[str, Any]]:
    """The self-consistency sample count whose tokens per problem match ``team_tokens``, from a pilot
    of ``PILOT_SAMPLES`` samples on the first ``PILOT_PROBLEMS`` of ``problems`` (see the module doc),
    and the pilot's report (its tokens were spent too)."""
    from hyperteam.evals.runner import evaluate
    from hyperteam.topologies.builtin import self_consistency

    pilot = await evaluate(self_consistency(PILOT_SAMPLES), problems[:PILOT_PROBLEMS], model=model,
                           runtime=runtime, suite=suite, concurrency=concurrency)  # fmt: skip
    prompt, completion, extra = pilot_costs(pilot)
    samples = matched_samples(team_tokens, prompt, completion, extra)
    log.info("self-consistency: %d samples match %.0f tokens per problem (pilot: %.0f prompt tokens a request, "
             "%.0f completion tokens a sample, %.0f prompt tokens an extra sample)", samples, team_tokens, prompt,
             completion, extra)  # fmt: skip
    return samples, pilot


async def run_baseline(
    name: str,
    problems: Sequence[Problem],
    *,
    run_dir: str | Path,
    model: Any,
    suite: str,
    runtime: Any = None,
    concurrency: int = 64,
    resume: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Runs the equal-token baseline for the team run in ``run_dir`` (which must be finished).

    ``runtime`` (a ``hyperteam.models.Runtime``) is shared with the team's run where given, so
    that one model server and its learned capacity serve both; default: one per evaluation.

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
        samples, pilot = store.meta().get("samples"), None
        if samples is None or not resume:
            samples, pilot = await matched_self_consistency(
                team_tokens, problems, model=model, runtime=runtime, suite=suite, concurrency=concurrency
            )
        report = await evaluate(self_consistency(int(samples)), problems, concurrency=concurrency, store=store,
                                resume=resume, model=model, runtime=runtime, suite=suite,
                                progress=progress)  # fmt: skip
        store.set_meta(samples=int(samples), matched_tokens=team_tokens)
        if pilot is not None:  # a resumed baseline keeps its first pilot's figure
            store.set_meta(pilot_tokens=pilot["tokens"]["total"])
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
    matched = meta.get("matched_tokens")
    return {
        "team": meta.get("team"),
        "samples": meta.get("samples"),
        "matched_tokens": matched,
        **token_match(report["tokens"]["per_problem"], matched),
        "pilot_tokens": meta.get("pilot_tokens"),  # spent to choose the sample count, not in ``tokens``
        "run_dir": str(Path(run_dir) / BASELINE_DIR),
        "n": report["n"],
        "accuracy": report["accuracy"],
        "ci95": report["ci95"],
        "tokens": report["tokens"],
        "calls_per_problem": report["calls_per_problem"],
        "errors": report["errors"],
        "paired": paired,
    }
