"""``hyperteam bench prefix``: how much of each team's prompt traffic a prefix cache could reuse.

Each built-in team answers N GSM8K problems against ``hyperteam sim`` with
its request log (messages included). Every prompt is turned into one token
sequence (the sim's tokenizer, with chat-template markers); in arrival
order, the tokens of a prompt that lie in a prefix already sent earlier in
the run are what a prefix cache such as vLLM's or SGLang's could reuse.
Everything here runs on the SIMULATED model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import load
from hyperteam.models.runtime import Runtime
from hyperteam.models.tokenizer import message_tokens
from hyperteam.topologies.builtin import BUILTIN_TEAMS
from hyperteam.topologies.io import load_team


class PrefixTrie:
    """Token sequences seen so far; ``add`` returns how many leading tokens were already there.

    Example:
        >>> trie = PrefixTrie()
        >>> trie.add(["a", "b", "c"]), trie.add(["a", "b", "d", "e"])
        (0, 2)
    """

    def __init__(self) -> None:
        self._root: dict[str, Any] = {}

    def add(self, tokens: list[str]) -> int:
        node = self._root
        reused = 0
        matching = True
        for tok in tokens:
            nxt = node.get(tok)
            if nxt is None:
                matching = False
                nxt = node[tok] = {}
            elif matching:
                reused += 1
            node = nxt
        return reused


def prefix_reuse(prompts: list[list[dict[str, str]]]) -> tuple[int, int]:
    """(reusable tokens, all prompt tokens) over prompts in the order they were sent."""
    trie = PrefixTrie()
    reused = total = 0
    for messages in prompts:
        tokens = message_tokens(messages)
        reused += trie.add(tokens)
        total += len(tokens)
    return reused, total


async def _run_team(name: str, url: str, questions: list[str], concurrency: int) -> None:
    team = load_team(name)
    gate = asyncio.Semaphore(concurrency)
    async with Runtime(max_concurrency=concurrency) as runtime:

        async def one(q: str) -> None:
            async with gate:
                await team.run(q, runtime=runtime, model=f"{url}#sim-0.8")

        await asyncio.gather(*(one(q) for q in questions))


def measure(name: str, questions: list[str], *, concurrency: int, workdir: Path) -> dict[str, Any]:
    from hyperteam.testing.sim.server import start_sim_subprocess, stop_sim_subprocess

    log = workdir / f"{name}.jsonl"
    proc, url = start_sim_subprocess("--latency-ms", "0", "--request-log", str(log), "--log-messages")
    try:
        asyncio.run(_run_team(name, url, questions, concurrency))
    finally:
        stop_sim_subprocess(proc)
    entries = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda e: e["t"])
    reused, total = prefix_reuse([e["messages"] for e in entries])
    return {
        "calls": len(entries),
        "prompt_tokens": sum(e["prompt_tokens"] for e in entries),
        "completion_tokens": sum(e["completion_tokens"] for e in entries),
        "prompt_tokens_per_problem": round(sum(e["prompt_tokens"] for e in entries) / len(questions), 1),
        "prefix_reuse": round(reused / total, 3) if total else 0.0,
    }


def _default_teams() -> list[str]:
    """Every built-in team; ``hyperagent-gsm8k`` only where torch (the ``learn`` extra) is installed."""
    import importlib.util

    has_torch = importlib.util.find_spec("torch") is not None
    return [t for t in BUILTIN_TEAMS if has_torch or t != "hyperagent-gsm8k"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench prefix", description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=50, help="GSM8K test problems per team (default 50)")
    parser.add_argument("--teams", default=",".join(_default_teams()), help="comma list of built-in teams")
    parser.add_argument("--concurrency", type=int, default=16, help="problems in flight (default 16)")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.problems < 1 or args.concurrency < 1:
        raise ConfigError("--problems and --concurrency must be >= 1")
    teams = [t for t in args.teams.split(",") if t]
    unknown = [t for t in teams if t not in BUILTIN_TEAMS]
    if unknown:
        raise ConfigError(f"unknown team(s) {', '.join(unknown)}; built-in teams: {', '.join(BUILTIN_TEAMS)}")
    questions = [p.question for p in load("gsm8k", split="test", limit=args.problems)]
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in teams:
            rows[name] = measure(name, questions, concurrency=args.concurrency, workdir=Path(tmp))
    print(f"prefix: {len(questions)} GSM8K problems per team against hyperteam sim (SIMULATED)")
    header = f"{'team':<18}{'calls':>7}{'prompt_tok':>12}{'compl_tok':>11}{'prompt/problem':>16}{'prefix_reuse':>14}"
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(
            f"{name:<18}{r['calls']:>7}{r['prompt_tokens']:>12}{r['completion_tokens']:>11}"
            f"{r['prompt_tokens_per_problem']:>16.1f}{r['prefix_reuse']:>14.3f}"
        )
    if args.json_path:
        out = {"simulated": True, "problems": len(questions), "teams": rows}
        Path(args.json_path).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0
