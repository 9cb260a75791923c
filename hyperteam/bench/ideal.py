"""The ideal wall time of a workload: a zero-overhead replay of its dependency structure.

Each problem is a sequence of stages; a stage is a set of LLM calls that may
run in parallel, and the next stage starts when all of them are done. Calls
take exactly what the server's latency model says, need one of ``slots``
server slots (FIFO), and at most ``problem_slots`` problems are in progress.
No client time, no network time: what is left is the physical limit of the
workload under that concurrency.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Any

Stages = Sequence[Sequence[float]]


def ideal_wall_time(problems: Sequence[Stages], *, slots: int, problem_slots: int) -> float:
    """Simulated makespan of ``problems`` (each a list of stages of call durations, in seconds).

    Example:
        >>> ideal_wall_time([[[1.0, 1.0], [0.5]]], slots=1, problem_slots=1)
        2.5
    """
    if slots < 1 or problem_slots < 1:
        raise ValueError("slots and problem_slots must be >= 1")
    now = 0.0
    waiting: deque[tuple[int, float]] = deque()  # (problem, duration) calls waiting for a slot
    running: list[tuple[float, int, int]] = []  # heap of (finish time, seq, problem)
    stage_of = [0] * len(problems)
    left_in_stage = [0] * len(problems)
    next_problem = 0
    free = slots
    seq = 0

    def start_stage(p: int) -> None:
        while stage_of[p] < len(problems[p]) and not problems[p][stage_of[p]]:
            stage_of[p] += 1  # an empty stage costs nothing
        if stage_of[p] < len(problems[p]):
            calls = problems[p][stage_of[p]]
            left_in_stage[p] = len(calls)
            waiting.extend((p, d) for d in calls)
        else:
            finished.append(p)

    finished: list[int] = []
    active = 0
    while next_problem < len(problems) and active < problem_slots:
        start_stage(next_problem)
        next_problem += 1
        active += 1
    done = 0
    end = 0.0
    while done < len(problems):
        while finished:
            finished.pop()
            done += 1
            active -= 1
            end = now
            if next_problem < len(problems):
                start_stage(next_problem)
                next_problem += 1
                active += 1
        while free and waiting:
            p, d = waiting.popleft()
            free -= 1
            seq += 1
            heapq.heappush(running, (now + d, seq, p))
        if not running:
            continue
        now, _, p = heapq.heappop(running)
        free += 1
        left_in_stage[p] -= 1
        if left_in_stage[p] == 0:
            stage_of[p] += 1
            start_stage(p)
    return end


def stages_of(trace: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Completion tokens of a run's calls, grouped into the stages that ran one after another.

    ``trace`` holds trace events as dicts (``TraceEvent.to_dict``, or a stored
    row's trace): the agent calls of one layer or round form a stage, and a
    fusion that called a model is a stage of its own.
    """
    stages: list[list[int]] = []
    layer = None
    for ev in trace:
        if ev["kind"] == "agent" and ev["error"] is None:
            if ev["layer"] != layer:
                stages.append([])
                layer = ev["layer"]
            stages[-1].append(ev["usage"]["completion_tokens"])
        elif ev["kind"] == "fusion" and ev["usage"]["calls"]:
            stages.append([ev["usage"]["completion_tokens"]])
            layer = None
    return stages


def durations(
    problems: Sequence[Sequence[Sequence[int]]], ttft_s: float, per_token_s: float
) -> list[list[list[float]]]:
    """Each call's service time under a latency model of ``ttft_s + per_token_s * tokens``."""
    return [[[ttft_s + per_token_s * n for n in stage] for stage in stages] for stages in problems]
