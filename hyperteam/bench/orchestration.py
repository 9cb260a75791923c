"""``hyperteam bench orchestration``: how close a team gets to the physical limit of its workload.

N GSM8K problems go through ``ann-gsm8k`` against ``hyperteam sim`` over HTTP
(a separate process, as a model server would be). The same team is then
written the two ways a user would otherwise write it, run in the same
session against the same server:

* ``asyncio``: plain asyncio and the openai SDK;
* ``langgraph``: a hand-written LangGraph graph (a node per agent) calling the openai SDK.

All three use the same prompts, so the simulator returns the same tokens and
the ideal wall time (see :mod:`hyperteam.bench.ideal`) is the same workload.
Client CPU is everything the client process spent (getrusage), per LLM call.
Everything here runs on the SIMULATED model.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from hyperteam.agents.parsing import extract_answer
from hyperteam.bench.ideal import durations, ideal_wall_time, stages_of
from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem, load
from hyperteam.models.runtime import Runtime
from hyperteam.topologies.io import load_team
from hyperteam.topologies.layered import LayeredTeam


@dataclass
class Measured:
    """One implementation's run: wall time, client CPU, calls, and each problem's call stages."""

    wall_s: float
    cpu_s: float
    calls: int
    correct: int
    failed: int
    stages: list[list[list[int]]] = field(default_factory=list)  # per problem, per stage: completion tokens
    endpoint: dict[str, Any] = field(default_factory=dict)  # hyperteam only: the in-flight limit and its source
    call_errors: dict[str, int] = field(default_factory=dict)  # hyperteam only: failed agent calls, by kind

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000.0 * self.cpu_s / max(1, self.calls)


async def _measure(problems: list[Problem], concurrency: int, solve: Callable[[Problem], Awaitable[Any]]) -> Any:
    gate = asyncio.Semaphore(concurrency)
    # One problem first, untimed: imports, graph compilation and first
    # connections are one-time costs, not per-call ones.
    await solve(problems[0])

    async def one(p: Problem) -> Any:
        async with gate:
            return await solve(p)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in problems), return_exceptions=True)
    wall = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return results, wall, cpu


async def run_hyperteam(team: LayeredTeam, url: str, problems: list[Problem], concurrency: int) -> Measured:
    # C is a ceiling, as in the baselines; beneath it the client finds the server's own limit
    # (its /props) and keeps to it: no HYPERTEAM_MAX_CONCURRENCY needed for a small server.
    errors: Counter[str] = Counter()
    async with Runtime(max_concurrency=concurrency) as runtime:
        model = f"{url}#sim-0.8"

        async def solve(p: Problem) -> tuple[str, list[list[int]]]:
            result = await team.run(p.question, runtime=runtime, model=model)
            errors.update(ev.error.split(":", 1)[0] for ev in result.trace if ev.error)
            return result.text, stages_of([ev.to_dict() for ev in result.trace])

        results, wall, cpu = await _measure(problems, concurrency, solve)
        stats = runtime.endpoint_stats()
    measured = _tally(problems, results, wall, cpu)
    measured.endpoint = stats[0] if stats else {}
    measured.call_errors = dict(errors)
    return measured


def _messages(team: LayeredTeam, question: str) -> tuple[list[list[dict[str, str]]], Any]:
    solve, verify = team.layers
    first = [a.messages(question) for a in solve.agents]
    verifier = verify.agents[0]
    return first, lambda text: verifier.messages(question, text, verify.input_title)


def _vote(texts: list[str]) -> str:
    answers = [extract_answer(t) for t in texts]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return texts[0]
    top = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == top)
    return texts[answers.index(winner)]


async def run_asyncio(team: LayeredTeam, url: str, problems: list[Problem], concurrency: int) -> Measured:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="sim", max_retries=2, timeout=120)
    calls_gate = asyncio.Semaphore(concurrency)

    async def call(messages: list[dict[str, str]]) -> tuple[str, int]:
        async with calls_gate:
            r = await client.chat.completions.create(model="sim-0.8", messages=messages)
        return r.choices[0].message.content or "", r.usage.completion_tokens

    async def solve(p: Problem) -> tuple[str, list[list[int]]]:
        first, verifier = _messages(team, p.question)
        outs = await asyncio.gather(*(call(m) for m in first))
        final, tokens = await call(verifier(_vote([t for t, _ in outs])))
        return final, [[n for _, n in outs], [tokens]]

    results, wall, cpu = await _measure(problems, concurrency, solve)
    await client.close()
    return _tally(problems, results, wall, cpu)


class _GraphState(TypedDict):
    question: str
    drafts: Annotated[list, operator.add]
    final: str
    tokens: Annotated[list, operator.add]


async def run_langgraph(team: LayeredTeam, url: str, problems: list[Problem], concurrency: int) -> Measured:
    from langgraph.graph import END, START, StateGraph
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="sim", max_retries=2, timeout=120)
    calls_gate = asyncio.Semaphore(concurrency)
    solve_layer, verify_layer = team.layers

    async def call(messages: list[dict[str, str]]) -> tuple[str, int]:
        async with calls_gate:
            r = await client.chat.completions.create(model="sim-0.8", messages=messages)
        return r.choices[0].message.content or "", r.usage.completion_tokens

    def solver_node(agent: Any, index: int) -> Any:
        async def node(state: _GraphState) -> dict[str, Any]:
            text, n = await call(agent.messages(state["question"]))
            return {"drafts": [(index, text)], "tokens": [(0, n)]}

        return node

    async def verify_node(state: _GraphState) -> dict[str, Any]:
        drafts = [t for _, t in sorted(state["drafts"])]
        verifier = verify_layer.agents[0]
        text, n = await call(verifier.messages(state["question"], _vote(drafts), verify_layer.input_title))
        return {"final": text, "tokens": [(1, n)]}

    graph = StateGraph(_GraphState)
    for i, agent in enumerate(solve_layer.agents):
        graph.add_node(agent.name, solver_node(agent, i))
        graph.add_edge(START, agent.name)
        graph.add_edge(agent.name, "verify")
    graph.add_node("verify", verify_node)
    graph.add_edge("verify", END)
    app = graph.compile()

    async def solve(p: Problem) -> tuple[str, list[list[int]]]:
        state = await app.ainvoke({"question": p.question, "drafts": [], "final": "", "tokens": []})
        stages: list[list[int]] = [[], []]
        for stage, n in state["tokens"]:
            stages[stage].append(n)
        return state["final"], stages

    results, wall, cpu = await _measure(problems, concurrency, solve)
    await client.close()
    return _tally(problems, results, wall, cpu)


def _tally(problems: list[Problem], results: list[Any], wall: float, cpu: float) -> Measured:
    m = Measured(wall, cpu, 0, 0, 0)
    for p, r in zip(problems, results, strict=True):
        if isinstance(r, BaseException):
            m.failed += 1
            m.stages.append([])
            continue
        text, stages = r
        m.calls += sum(len(stage) for stage in stages)
        m.correct += extract_answer(text) == p.answer
        m.stages.append(stages)
    return m


def _ideal(m: Measured, ttft_s: float, per_token_s: float, slots: int, problem_slots: int) -> float:
    return ideal_wall_time(durations(m.stages, ttft_s, per_token_s), slots=slots, problem_slots=problem_slots)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench orchestration", description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=500, help="GSM8K test problems (default 500)")
    parser.add_argument("--concurrency", type=int, default=256, help="client concurrency C (default 256)")
    parser.add_argument("--ttft-ms", type=float, default=150.0, help="sim time to first token (default 150)")
    parser.add_argument("--per-token-ms", type=float, default=3.0, help="sim time per output token (default 3)")
    parser.add_argument("--server-concurrency", type=int, default=256, help="sim concurrency (default 256)")
    parser.add_argument("--baselines", default="asyncio,langgraph", help="comma list, or 'none'")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.problems < 1 or args.concurrency < 1:
        raise ConfigError("--problems and --concurrency must be >= 1")
    baselines = [] if args.baselines == "none" else [b for b in args.baselines.split(",") if b]
    unknown = set(baselines) - {"asyncio", "langgraph"}
    if unknown:
        raise ConfigError(f"unknown baseline(s): {', '.join(sorted(unknown))}; known: asyncio, langgraph")
    problems = load("gsm8k", split="test", limit=args.problems)
    team = load_team("ann-gsm8k")
    assert isinstance(team, LayeredTeam)

    from hyperteam.testing.sim.server import start_sim_subprocess

    proc, url = start_sim_subprocess(
        "--latency-ms",
        f"{args.ttft_ms:g},{args.per_token_ms:g}",
        "--max-concurrency",
        str(args.server_concurrency),
    )
    # Freeze what the imports made out of the cyclic GC's way (the same for
    # every implementation measured): full collections otherwise rescan
    # hundreds of thousands of long-lived objects during the runs.
    gc.collect()
    gc.freeze()
    runners = {"hyperteam": run_hyperteam, "asyncio": run_asyncio, "langgraph": run_langgraph}
    measured: dict[str, Measured] = {}
    try:
        for name in ["hyperteam", *baselines]:
            measured[name] = asyncio.run(runners[name](team, url, problems, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    slots = min(args.concurrency, args.server_concurrency)
    rows = {}
    for name, m in measured.items():
        ideal = _ideal(m, args.ttft_ms / 1000, args.per_token_ms / 1000, slots, args.concurrency)
        rows[name] = {
            "wall_s": round(m.wall_s, 3),
            "ideal_s": round(ideal, 3),
            "efficiency": round(ideal / m.wall_s, 3),
            "calls": m.calls,
            "cpu_ms_per_call": round(m.cpu_ms_per_call, 3),
            "accuracy": round(m.correct / len(problems), 3),
            "failed": m.failed,
        }
    _print_table(rows, args, len(problems))
    hm = measured["hyperteam"]
    print(
        f"hyperteam client: at most {hm.endpoint.get('peak_in_flight')} in flight "
        f"(limit {hm.endpoint.get('limit')}, from the {hm.endpoint.get('source')}); "
        f"failed agent calls: {hm.call_errors or 'none'}"
    )
    out = dict(rows["hyperteam"])
    out.update(
        {
            "simulated": True,
            "problems": len(problems),
            "concurrency": args.concurrency,
            "server": {
                "ttft_ms": args.ttft_ms,
                "per_token_ms": args.per_token_ms,
                "concurrency": args.server_concurrency,
            },
            "baselines": {name: rows[name] for name in baselines},
            "client": {
                "peak_in_flight": hm.endpoint.get("peak_in_flight"),
                "limit": hm.endpoint.get("limit"),
                "limit_source": hm.endpoint.get("source"),
                "failed_calls": hm.call_errors,
            },
        }
    )
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


def _print_table(rows: dict[str, dict[str, Any]], args: argparse.Namespace, n: int) -> None:
    print(
        f"orchestration: {n} GSM8K problems x ann-gsm8k, client concurrency {args.concurrency}, "
        f"hyperteam sim (SIMULATED: {args.ttft_ms:g} ms + {args.per_token_ms:g} ms/token, "
        f"{args.server_concurrency} slots)"
    )
    header = (
        f"{'implementation':<16}{'wall_s':>9}{'ideal_s':>9}{'efficiency':>12}{'calls':>8}"
        f"{'cpu_ms/call':>13}{'accuracy':>10}{'failed':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(
            f"{name:<16}{r['wall_s']:>9.2f}{r['ideal_s']:>9.2f}{r['efficiency']:>12.3f}{r['calls']:>8}"
            f"{r['cpu_ms_per_call']:>13.3f}{r['accuracy']:>10.3f}{r['failed']:>8}"
        )
