"""A team against `hyperteam sim --fault-rate 0.1`: every problem ends, limits and deadlines hold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import hyperteam as ht
from hyperteam.models import RetryPolicy, Runtime
from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess
from tests.conftest import needs_data

DEADLINE_S = 2.0
CLIENT_LIMIT = 16


@needs_data
def test_200_problems_under_faults_all_end_within_limits_and_deadlines(tmp_path: Path, data_dir: Path):
    log = tmp_path / "requests.jsonl"
    server, url = start_sim_subprocess(
        "--fault-rate", "0.1", "--latency-ms", "20,0.5", "--request-log", str(log), "--seed", "7"
    )
    problems = ht.datasets.load("gsm8k", split="test", limit=200)
    team = ht.load_team("ann-gsm8k")

    async def run_all() -> list[object]:
        policy = RetryPolicy(timeout_s=DEADLINE_S, base_delay_s=0.05, max_delay_s=0.5)
        async with Runtime(max_concurrency=CLIENT_LIMIT, retry=policy) as runtime:
            return await asyncio.gather(
                *(team.run(p.question, runtime=runtime, model=f"{url}#sim-0.8") for p in problems),
                return_exceptions=True,
            )

    try:
        results = asyncio.run(asyncio.wait_for(run_all(), timeout=120))
    finally:
        stop_sim_subprocess(server)

    answered = [r for r in results if isinstance(r, ht.TeamResult)]
    failed = [r for r in results if isinstance(r, ht.ModelError)]
    assert len(answered) + len(failed) == 200  # every problem ended, as an answer or a ModelError
    assert all(r.answer is not None for r in answered)
    assert all(f.kind and str(f) for f in failed)
    assert len(answered) > 150
    recovered = [ev for r in answered for ev in r.trace if ev.kind == "agent" and ev.error]
    accuracy = sum(r.answer == p.answer for r, p in zip(results, problems, strict=True) if isinstance(r, ht.TeamResult))
    assert accuracy / len(answered) > 0.6

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    faults = {e["fault"] for e in entries if e["fault"]}
    assert {"429", "500", "503", "drop", "hang", "malformed"} <= faults  # every kind was exercised
    assert max(e["in_flight"] for e in entries) <= CLIENT_LIMIT
    longest = max(e["queue_ms"] + e["service_ms"] for e in entries)
    assert longest <= DEADLINE_S * 1000 + 250  # hung calls were cut at the deadline
    assert any(e["status"] == "hang" for e in entries)
    # Faults reached the user with their kind: the hung calls as timeouts, in a trace or as the problem's error.
    seen = [ev.error for ev in recovered] + [f"{f.kind}: {f}" for f in failed]
    assert any(s.startswith("timeout: ") for s in seen)
    kinds = {s.split(":", 1)[0] for s in seen}
    assert kinds <= {"timeout", "connection", "bad_response", "malformed", "http_429", "http_500", "http_503"}, kinds
    assert len(entries) > sum(r.usage.calls for r in answered)  # retried requests are in the server's log
