"""``hyperteam bench service``: many concurrent clients against a served team, and the service's own overhead.

Three processes, as in production: ``hyperteam sim`` (the model server),
``hyperteam serve --team single`` (the service under test) and this one,
whose C clients each send chat completions back to back for D seconds over
keep-alive connections. For each request, the service's overhead is the
latency the client saw minus the team's LLM time (the model call's own
latency, which the service reports in ``hyperteam.runs[0].usage``).
``single`` makes one model call per request, so that LLM time is exact.
Everything here runs on the SIMULATED model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import load
from hyperteam.models._rawhttp import RawHttpTransport
from hyperteam.serve.cli import loop_factory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_service(team: str, model: str, key_file: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "hyperteam.cli", "serve", "--team", team, "--model", model]
    cmd += ["--port", str(port), "--api-key-file", str(key_file), "--store", str(key_file.parent / "runs.sqlite")]
    cmd += ["--log-level", "WARNING"]  # a log line per request is the operator's choice, not the bench's
    log = key_file.parent / "serve.log"
    # Its log goes to a file: a pipe nobody reads fills up and blocks the service.
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"hyperteam serve exited: {log.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise ConfigError("hyperteam serve did not start within 60 s")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def _drive(
    url: str, key: str, team: str, questions: list[str], clients: int, duration: float, ramp: float = 0.0
) -> dict[str, Any]:
    """C closed-loop clients for ``duration`` seconds after a ``ramp`` in which they start one by one.

    Requests started during the ramp are not counted: 200 clients firing at
    the same instant measure a thundering herd, not the service's steady state.
    """
    latencies: list[float] = []
    overheads: list[float] = []
    errors: dict[str, int] = {}
    # The lean client the service itself uses for models: the clients' own CPU shares the machine
    # with the service and counts in the latency they see, so it must be small (aiohttp's is ~3x).
    http = RawHttpTransport(url, key, max_connections=clients)
    try:
        t0 = time.monotonic()
        measured_from, end = t0 + ramp, t0 + ramp + duration

        async def client(i: int) -> None:
            n = i
            await asyncio.sleep(ramp * i / clients)
            while time.monotonic() < end:
                counted = time.monotonic() >= measured_from
                q = questions[n % len(questions)]
                n += clients
                body = orjson.dumps({"model": team, "messages": [{"role": "user", "content": q}]})
                started = time.perf_counter()
                try:
                    status, _, data = await http.post("/v1/chat/completions", body, timeout_s=60.0)
                except (TimeoutError, ConnectionError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                elapsed = time.perf_counter() - started
                if status != 200:
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                    continue
                if counted:
                    llm_s = orjson.loads(data)["hyperteam"]["runs"][0]["usage"]["latency_s"]
                    latencies.append(elapsed)
                    overheads.append(elapsed - llm_s)

        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = duration
    finally:
        await http.close()
    ms = 1000.0
    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "requests_per_s": round(len(latencies) / wall, 1),
        "latency_ms": {q: round(_percentile(latencies, p) * ms, 2) for q, p in (("p50", 0.5), ("p99", 0.99))},
        "overhead_ms": {q: round(_percentile(overheads, p) * ms, 2) for q, p in (("p50", 0.5), ("p99", 0.99))},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam bench service", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of measured load (default 30)")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which clients start, unmeasured")
    parser.add_argument("--team", default="single", help="served team (default single: one call a request)")
    parser.add_argument("--ttft-ms", type=float, default=150.0, help="sim time to first token (default 150)")
    parser.add_argument("--per-token-ms", type=float, default=3.0, help="sim time per output token (default 3)")
    parser.add_argument("--json", dest="json_path", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0:
        raise ConfigError("--clients must be >= 1 and --duration > 0")
    questions = [p.question for p in load("demo")]

    from hyperteam.testing.sim.server import start_sim_subprocess, stop_sim_subprocess

    sim, sim_url = start_sim_subprocess(
        "--latency-ms", f"{args.ttft_ms:g},{args.per_token_ms:g}", "--max-concurrency", str(max(256, args.clients))
    )
    key = "sk-bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "keys.txt"
        key_file.write_text(key + "\n")
        os.chmod(key_file, 0o600)
        port = _free_port()
        service = None
        try:
            service = _start_service(args.team, f"{sim_url}#sim-0.8", key_file, port)
            url = f"http://127.0.0.1:{port}"
            # On the service's event loop (uvloop where installed): the clients' own CPU counts in their latency.
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(_drive(url, key, args.team, questions, min(args.clients, 8), 1.0))  # warm-up
                result = runner.run(_drive(url, key, args.team, questions, args.clients, args.duration, args.ramp))
        finally:
            if service is not None:
                service.send_signal(signal.SIGINT)
                try:
                    service.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    service.kill()
            stop_sim_subprocess(sim)
    result.update({"simulated": True, "clients": args.clients, "team": args.team})
    result.update({"duration_s": args.duration, "ramp_s": args.ramp})
    print(
        f"service: {args.clients} clients x {args.duration:g} s against `hyperteam serve --team {args.team}` "
        f"backed by hyperteam sim (SIMULATED: {args.ttft_ms:g} ms + {args.per_token_ms:g} ms/token)"
    )
    header = (
        f"{'requests':>9}{'req/s':>8}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'overhead p50':>14}{'overhead p99':>14}"
    )
    print(header)
    print("-" * len(header))
    lat, ovh = result["latency_ms"], result["overhead_ms"]
    print(
        f"{result['requests']:>9}{result['requests_per_s']:>8.1f}{result['errors']:>8}{lat['p50']:>9.1f}"
        f"{lat['p99']:>9.1f}{ovh['p50']:>14.2f}{ovh['p99']:>14.2f}"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
