"""``hyperteam bench eval``: the real ``hyperteam eval`` against ``hyperteam sim``, and its distance from ideal.

Starts the simulated model (150 ms to first token + 3 ms per token, 256
slots by default), runs ``hyperteam eval SUITE --team TEAM --concurrency C``
as a user would (a separate process, progress bar off), then replays the
stored traces through the sim's latency model (:mod:`hyperteam.bench.ideal`)
for the ideal time. ``wall_s`` is the eval's own wall time from its report
(imports and start-up excluded; they are shown as ``process_s``).
Everything here runs on the SIMULATED model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperteam.bench.ideal import durations, ideal_wall_time, stages_of
from hyperteam.errors import ConfigError
from hyperteam.evals.store import ResultStore


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench eval", description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="gsm8k", help="suite (default gsm8k)")
    parser.add_argument("--team", default="ann-gsm8k", help="team (default ann-gsm8k)")
    parser.add_argument("--problems", type=int, help="only the first N problems (default: all)")
    parser.add_argument("--concurrency", type=int, default=256, help="eval concurrency (default 256)")
    parser.add_argument("--ttft-ms", type=float, default=150.0, help="sim time to first token (default 150)")
    parser.add_argument("--per-token-ms", type=float, default=3.0, help="sim time per output token (default 3)")
    parser.add_argument("--server-concurrency", type=int, default=256, help="sim concurrency (default 256)")
    parser.add_argument("--accuracy", default="0.7", help="the sim model's accuracy (default 0.7)")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or (args.problems is not None and args.problems < 1):
        raise ConfigError("--problems and --concurrency must be >= 1")

    from hyperteam.testing.sim.server import start_sim_subprocess, stop_sim_subprocess

    latency = f"{args.ttft_ms:g},{args.per_token_ms:g}"
    proc, url = start_sim_subprocess("--latency-ms", latency, "--max-concurrency", str(args.server_concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "hyperteam.cli", "eval", args.suite, "--team", args.team]
        cmd += ["--model", f"{url}#sim-{args.accuracy}", "--concurrency", str(args.concurrency)]
        cmd += ["--out", str(out), "--no-progress"]
        if args.problems:
            cmd += ["--limit", str(args.problems)]
        started = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            stop_sim_subprocess(proc)
        process_s = time.perf_counter() - started
        if done.returncode != 0:
            raise ConfigError(f"hyperteam eval failed: {done.stderr.strip().splitlines()[-1:]}")
        report = json.loads((out / "report.json").read_text())
        store = ResultStore(out / "results.sqlite")
        stages = [stages_of(row.trace) for row in store.rows()]
        store.close()
    slots = min(args.concurrency, args.server_concurrency)
    ideal = ideal_wall_time(
        durations(stages, args.ttft_ms / 1000, args.per_token_ms / 1000), slots=slots, problem_slots=args.concurrency
    )
    row = {
        "problems": report["n"],
        "wall_s": round(report["wall_s"], 3),
        "ideal_s": round(ideal, 3),
        "efficiency": round(ideal / report["wall_s"], 3),
        "process_s": round(process_s, 3),
        "calls": report["calls"],
        "accuracy": report["accuracy"],
        "errors": report["errors"],
        "simulated": True,
    }
    print(
        f"eval: hyperteam eval {args.suite} --team {args.team} --concurrency {args.concurrency} against "
        f"hyperteam sim (SIMULATED: {latency} ms, {args.server_concurrency} slots)"
    )
    header = f"{'problems':>9}{'wall_s':>9}{'ideal_s':>9}{'efficiency':>12}{'process_s':>11}{'calls':>8}{'strict':>8}"
    print(header)
    print("-" * len(header))
    print(
        f"{row['problems']:>9}{row['wall_s']:>9.2f}{row['ideal_s']:>9.2f}{row['efficiency']:>12.3f}"
        f"{row['process_s']:>11.2f}{row['calls']:>8}{row['accuracy']['strict']:>8.3f}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return 0
