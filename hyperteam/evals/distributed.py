"""Evals over a Ray cluster: problems sharded over workers, results streamed into one store.

``hyperteam eval SUITE --ray [ADDRESS|local]`` splits the problems still to
do into chunks; each chunk is a Ray task that runs the team on its problems
concurrently and yields each problem's row the moment it is scored (a Ray
generator). The driver writes every row into the run's SQLite store as it
arrives, so a run killed at any moment resumes with ``--resume`` like a
local one: finished problems are kept and not recomputed, and the final
numbers equal a run without Ray.

A sweep (``--sweep FILE``) runs several teams or settings at once: the chunks
of every run share the cluster, and each run gets its own folder and store.

Ray is the ``ray`` extra (``pip install 'hyperteam[ray]'``), imported here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperteam.errors import ConfigError, HyperteamError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import Progress, _check_meta, score
from hyperteam.evals.store import ResultRow, ResultStore
from hyperteam.topologies.team import Team

log = logging.getLogger(__name__)

_ENV_PREFIXES = ("HYPERTEAM_", "OPENAI_")


def connect(address: str | None) -> Any:
    """Joins (or starts) a Ray cluster and returns the ``ray`` module.

    ``local`` (or None) uses the Ray already initialised in this process, else
    starts one on this machine; anything else is a cluster address
    (``auto``, ``ray://HOST:10001``, ``HOST:6379``).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'hyperteam[ray]'") from None
    if ray.is_initialized():
        return ray
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
    try:
        if address in (None, "", "local"):
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
    return ray


def check_model(name: str, model: object) -> None:
    """Refuses what cannot run on Ray workers: a ``vllm:`` spec would start a server in each.

    Raises:
        ConfigError: naming the run and what to do instead.
    """
    if isinstance(model, str) and model.startswith("vllm:"):
        raise ConfigError(
            f"run {name!r}: a vllm: model would start a server per Ray worker; start it once with "
            "`hyperteam serve-model` and pass its http://HOST:PORT/v1#NAME spec"
        )


@dataclass
class RayRun:
    """One eval on the cluster: a team, its problems, and the store its rows go to."""

    name: str
    team: Team
    problems: Sequence[Problem]
    store: ResultStore
    model: str | None = None
    suite: str = "custom"
    resume: bool = False
    concurrency: int = 64
    todo: list[tuple[int, Problem]] = field(default_factory=list)
    progress: Progress | None = None
    started: float = 0.0


def run_on_ray(
    runs: Sequence[RayRun],
    *,
    address: str | None = "local",
    chunk_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs every eval of ``runs`` on Ray; returns their reports, in order.

    Args:
        runs: the evals; their stores get one row per finished problem.
        address: see :func:`connect`.
        chunk_size: problems per Ray task (default: about four tasks per CPU).
        progress: called after every stored row with the totals of all runs.

    Raises:
        ConfigError: bad arguments (a ``vllm:`` model: serve it first and pass its URLs).
        HyperteamError: a Ray task failed for good; finished rows are kept (resume the run).

    Example:
        >>> run = RayRun("demo", team, problems, ResultStore("runs/demo/results.sqlite"), model="sim:0.7")
        >>> [report] = run_on_ray([run], address="local")  # doctest: +SKIP
    """
    for run in runs:
        check_model(run.name, run.model)
        _check_meta(run.store, run.team, run.suite, run.model, run.resume, run.concurrency)
        done = run.store.done_ids()
        run.todo = [(i, p) for i, p in enumerate(run.problems) if p.id not in done]
    total_todo = sum(len(r.todo) for r in runs)
    overall = Progress(total=sum(len(r.problems) for r in runs), started=time.perf_counter())
    overall.done = overall.total - total_todo
    for run in runs:
        run.started = time.perf_counter()
    if total_todo:  # a finished run resumed: nothing to start Ray for
        ray = connect(address)
        _collect(ray, _submit(ray, runs, chunk_size, total_todo), overall, progress)
    from hyperteam.evals.report import build_report

    reports = []
    for run in runs:
        wall_s = float(run.store.meta().get("wall_s", 0.0)) + time.perf_counter() - run.started
        run.store.set_meta(wall_s=wall_s, n=len(run.problems))
        reports.append(build_report(run.store.rows(), run.store.meta()))
    return reports


def _submit(ray: Any, runs: Sequence[RayRun], chunk_size: int | None, total_todo: int) -> dict[Any, RayRun]:
    """One Ray generator task per chunk of problems; returns each task's generator and its run."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = chunk_size or max(1, min(50, math.ceil(total_todo / (4 * cpus))))
    remote = ray.remote(max_retries=2)(_eval_chunk)
    pending: dict[Any, RayRun] = {}
    for run in runs:
        data = _team_dict(run.team)
        for start in range(0, len(run.todo), size):
            pending[remote.remote(data, run.todo[start : start + size], run.model, run.concurrency)] = run
    log.info("ray eval: %d problems in %d tasks of <= %d on %d CPUs", total_todo, len(pending), size, cpus)
    return pending


def _collect(
    ray: Any, pending: dict[Any, RayRun], overall: Progress, progress: Callable[[Progress], None] | None
) -> None:
    """Stores every row the moment its task yields it, until all tasks are done."""
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for gen in ready:
            run = pending[gen]
            try:
                row: ResultRow = ray.get(next(gen))
            except StopIteration:
                del pending[gen]
                continue
            except Exception as exc:  # a task that failed for good
                for other in pending:
                    with contextlib.suppress(Exception):  # best effort: the run already failed
                        ray.cancel(other, force=True)
                raise HyperteamError(
                    f"a Ray task of run {run.name!r} failed: {str(exc).strip().splitlines()[-1]}; "
                    "finished problems are stored: rerun with --resume"
                ) from None
            if run.store.add(row):
                overall.add(row)
                if progress is not None:
                    progress(overall)


def _team_dict(team: Team) -> dict[str, Any]:
    from hyperteam.topologies.io import team_to_dict

    return team_to_dict(team)


def _eval_chunk(
    team_data: dict[str, Any], items: list[tuple[int, Problem]], model: str | None, concurrency: int
) -> Iterator[ResultRow]:
    """A Ray generator task: runs the team on ``items`` concurrently and yields each row as it finishes."""
    from hyperteam.models.runtime import Runtime
    from hyperteam.topologies.io import team_from_dict

    team = team_from_dict(team_data)
    team.compile()
    loop = asyncio.new_event_loop()
    runtime = Runtime(max_concurrency=concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def one(idx: int, problem: Problem) -> ResultRow:
        async with gate:
            try:
                return score(problem, idx, await team.run(problem.question, runtime=runtime, model=model))
            except Exception as exc:  # every failure is a stored result, as in a local run
                return score(problem, idx, error=exc)

    try:
        pending = {loop.create_task(one(i, p)) for i, p in items}
        while pending:
            done, pending = loop.run_until_complete(asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED))
            for task in done:
                yield task.result()
    finally:
        loop.run_until_complete(runtime.aclose())
        loop.close()
