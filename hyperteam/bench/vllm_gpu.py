"""``hyperteam bench vllm``: teams on a real model served by vLLM on this machine's GPU.

Serves a local model folder with ``vllm serve`` (prefix caching on), runs
``ann-gsm8k`` and ``hypergraph-gsm8k`` on N GSM8K problems against it, and
reports per team: output tokens/s, team problems/s and the prefix-cache hit
rate (the change in ``vllm:prefix_cache_hits_total`` over
``vllm:prefix_cache_queries_total`` from the server's ``/metrics``). Beside
them, vLLM's own ``vllm bench serve`` (random prompts) on the same server
gives the throughput the server reaches without a team in front of it.

Without a GPU or without vLLM it prints why and exits 0 (skipped). With
``--standin`` it runs the same plumbing against the SIMULATED stand-in
(``hyperteam.testing.vllm_standin``), for tests: its figures are not vLLM's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError

STANDIN = f"{sys.executable} -m hyperteam.testing.vllm_standin"
_METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench vllm", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="a local model folder (or a Hugging Face id)")
    parser.add_argument("--problems", type=int, default=200, help="GSM8K problems per team (default 200)")
    parser.add_argument("--teams", default="ann-gsm8k,hypergraph-gsm8k", help="comma-separated teams")
    parser.add_argument("--concurrency", type=int, default=64, help="problems in flight (default 64)")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="vLLM batch size (default 256)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM memory share (default 0.9)")
    parser.add_argument("--max-model-len", type=int, default=4096, help="context length (default 4096)")
    parser.add_argument("--bench-prompts", type=int, default=200, help="prompts for `vllm bench serve` (default 200)")
    parser.add_argument("--vllm-bin", help="the vllm executable (default $HYPERTEAM_VLLM_BIN, else vllm)")
    parser.add_argument("--standin", action="store_true", help="use the SIMULATED stand-in (tests the plumbing)")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.problems < 1 or args.concurrency < 1:
        raise ConfigError("--problems and --concurrency must be >= 1")

    from hyperteam.backends.vllm import VLLMOptions, VLLMServer

    options = VLLMOptions(
        served_model_name=Path(args.model_dir).name or args.model_dir,
        max_num_seqs=args.max_num_seqs,
        gpu_memory_utilization=None if args.standin else args.gpu_memory_utilization,
        max_model_len=None if args.standin else args.max_model_len,
        vllm_bin=STANDIN if args.standin else args.vllm_bin,
    )
    reason = None if args.standin else _why_not(options.command()[0])
    if reason:
        print(f"bench vllm: SKIPPED: {reason}")
        _write(args.json_path, {"skipped": reason})
        return 0
    from hyperteam.evals import datasets

    problems = datasets.load("gsm8k", limit=args.problems)
    server = VLLMServer(args.model_dir, options)
    rows: list[dict[str, Any]] = []
    try:
        server.start().wait_ready()
        for team in [t.strip() for t in args.teams.split(",") if t.strip()]:
            rows.append(_run_team(server, team, problems, args.concurrency))
        baseline = _vllm_bench(server, options, args.bench_prompts, standin=args.standin)
    finally:
        server.stop()
    label = "SIMULATED stand-in, not vLLM" if args.standin else f"vLLM, {_gpu_name()}"
    _print(rows, baseline, args, label)
    _write(args.json_path, {"model": args.model_dir, "simulated": args.standin, "teams": rows, "vllm_bench": baseline})
    return 0


def _why_not(executable: str) -> str | None:
    if shutil.which(executable) is None and not Path(executable).exists():
        return f"vLLM is not installed ({executable!r} not found): pip install 'hyperteam[vllm]' on a GPU machine"
    if _gpu_name() is None:
        return "no NVIDIA GPU found (nvidia-smi lists none)"
    return None


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].split(" (UUID")[0] if out.returncode == 0 and first else None


def metrics(base_url: str) -> dict[str, float]:
    """vLLM's ``/metrics`` counters and gauges, summed over labels (engines)."""
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line.strip())
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(2))
    return values


def _run_team(server: Any, team_name: str, problems: list[Any], concurrency: int) -> dict[str, Any]:
    from hyperteam.evals.runner import evaluate
    from hyperteam.models import Runtime
    from hyperteam.topologies import load_team

    team = load_team(team_name)
    team.compile()
    before = metrics(server.base_url)

    async def go() -> dict[str, Any]:
        async with Runtime(max_concurrency=max(concurrency, 256)) as rt:
            return await evaluate(team, problems, concurrency=concurrency, runtime=rt, model=server.spec)

    started = time.perf_counter()
    report = asyncio.run(go())
    wall = time.perf_counter() - started
    after = metrics(server.base_url)
    queries = after.get("vllm:prefix_cache_queries_total", 0.0) - before.get("vllm:prefix_cache_queries_total", 0.0)
    hits = after.get("vllm:prefix_cache_hits_total", 0.0) - before.get("vllm:prefix_cache_hits_total", 0.0)
    return {
        "team": team_name,
        "problems": report["n"],
        "wall_s": round(wall, 3),
        "output_tokens_per_s": round(report["tokens"]["completion"] / wall, 1),
        "problems_per_s": round(report["n"] / wall, 3),
        "prefix_cache_hit_rate": round(hits / queries, 4) if queries else None,
        "accuracy": report["accuracy"]["strict"],
        "calls": report["calls"],
        "errors": report["errors"],
    }


def _vllm_bench(server: Any, options: Any, prompts: int, *, standin: bool) -> dict[str, Any]:
    if standin:
        return {"skipped": "the stand-in has no `vllm bench serve`"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*options.command(), "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions"]
        cmd += ["--base-url", server.base_url.removesuffix("/v1"), "--model", server.model]
        cmd += ["--served-model-name", server.served_name, "--dataset-name", "random", "--num-prompts", str(prompts)]
        cmd += ["--save-result", "--result-dir", tmp, "--result-filename", "bench.json"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        result = Path(tmp) / "bench.json"
        if done.returncode != 0 or not result.exists():
            return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}
        data = json.loads(result.read_text())
    keys = ("request_throughput", "output_throughput", "total_token_throughput", "mean_ttft_ms", "completed")
    return {k: data.get(k) for k in keys}


def _print(rows: list[dict[str, Any]], baseline: dict[str, Any], args: argparse.Namespace, label: str) -> None:
    print(f"bench vllm: {args.model_dir} ({label}), {args.problems} GSM8K problems, concurrency {args.concurrency}")
    header = f"{'team':<20}{'wall_s':>8}{'out_tok/s':>11}{'problems/s':>12}{'prefix_hit':>12}{'strict':>8}{'errors':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        hit = "n/a" if r["prefix_cache_hit_rate"] is None else f"{r['prefix_cache_hit_rate']:.3f}"
        print(
            f"{r['team']:<20}{r['wall_s']:>8.2f}{r['output_tokens_per_s']:>11.1f}{r['problems_per_s']:>12.2f}"
            f"{hit:>12}{r['accuracy']:>8.3f}{r['errors']:>8}"
        )
    if "output_throughput" in baseline:
        print(
            f"vllm bench serve ({args.bench_prompts} random prompts): {baseline['output_throughput']:.1f} output "
            f"tokens/s, {baseline['request_throughput']:.2f} requests/s"
        )
    else:
        print(f"vllm bench serve: not run ({baseline.get('skipped') or baseline.get('error')})")


def _write(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
