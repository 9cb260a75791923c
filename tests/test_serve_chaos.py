"""Chaos: `hyperteam serve` killed with SIGKILL under load, three times, restarted on the same store.

Every chat completion answered 200 must afterwards be in the store as
``succeeded`` with its whole trace: an answer is given only once it is durable.
``HYPERTEAM_CHAOS_CLIENTS`` sets the load (default 32; the issue's figure was
measured with 200).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from hyperteam.models._rawhttp import RawHttpTransport
from tests.test_serve_server import _env, _free_port, _key_file, _serve_command
from tests.test_serve_support import KEY

CLIENTS = int(os.environ.get("HYPERTEAM_CHAOS_CLIENTS", "32"))
KILLS = 3


@pytest.fixture
def sim_url() -> Iterator[str]:
    from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess

    proc, url = start_sim_subprocess("--latency-ms", "30,0.2", "--max-concurrency", "512")
    try:
        yield url
    finally:
        stop_sim_subprocess(proc)


def _start(tmp_path: Path, sim_url: str, port: int) -> subprocess.Popen:
    command = [
        *_serve_command(),
        "--team",
        "ann-gsm8k",
        "--port",
        str(port),
        "--api-key-file",
        str(_key_file(tmp_path)),
    ]
    command += ["--store", str(tmp_path / "runs.sqlite"), "--model", f"{sim_url}#sim-0.8", "--log-level", "WARNING"]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited at start-up"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("the service did not start")


async def _load_then_kill(url: str, proc: subprocess.Popen, answered: dict[str, list], load_s: float) -> None:
    """CLIENTS clients send chat completions back to back; after ``load_s`` the service is killed (SIGKILL)
    the moment the next answer arrives: an answer sent before its run was stored would then be lost."""
    http = RawHttpTransport(url, KEY, max_connections=CLIENTS)
    body = orjson.dumps({"model": "ann-gsm8k", "messages": [{"role": "user", "content": "What is 17 + 25?"}]})
    killed = asyncio.Event()
    armed = asyncio.Event()

    async def client() -> None:
        while not killed.is_set():
            try:
                status, _, data = await http.post("/v1/chat/completions", body, timeout_s=30)
            except (ConnectionError, OSError, TimeoutError):
                await asyncio.sleep(0.01)
                continue
            if status == 200:
                run = orjson.loads(data)["hyperteam"]["runs"][0]
                answered[run["run_id"]] = [(s["kind"], s["agent"]) for s in run["trace"]]
                if armed.is_set() and not killed.is_set():
                    proc.send_signal(signal.SIGKILL)
                    killed.set()

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    await asyncio.sleep(load_s)
    armed.set()
    await asyncio.wait_for(killed.wait(), 30)
    proc.wait()
    await asyncio.gather(*clients)
    await http.close()


def test_every_answered_completion_survives_kill_9_under_load(tmp_path, sim_url):
    answered: dict[str, list] = {}
    rng = random.Random(16)

    async def chaos() -> None:
        for _ in range(KILLS):
            port = _free_port()
            proc = _start(tmp_path, sim_url, port)
            try:
                await _wait_up(port, proc)
                await _load_then_kill(f"http://127.0.0.1:{port}", proc, answered, load_s=rng.uniform(1.5, 2.5))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    asyncio.run(chaos())
    assert len(answered) >= 20, f"too little load got through: {len(answered)} answers"
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        status = dict(db.execute("SELECT id, status FROM runs"))
        traces: dict[str, list] = {}
        for run_id, event in db.execute("SELECT run_id, event FROM run_events ORDER BY run_id, seq"):
            event = json.loads(event)
            if event.get("type") == "trace":
                traces.setdefault(run_id, []).append((event["kind"], event.get("agent")))
    missing = [run_id for run_id in answered if status.get(run_id) != "succeeded"]
    # Parallel agents' events are stored as they finish, the answer lists them in the team's order.
    incomplete = [run_id for run_id, trace in answered.items() if sorted(traces.get(run_id, [])) != sorted(trace)]
    interrupted = sum(1 for s in status.values() if s == "interrupted")
    print(
        f"\nchaos: {CLIENTS} clients, {KILLS} kills: {len(answered)} answered, {len(missing)} missing or not "
        f"succeeded, {len(incomplete)} with an incomplete trace; {interrupted} unanswered runs interrupted"
    )
    assert missing == [] and incomplete == []
    assert interrupted > 0  # the kills did land mid-run: the test would have seen an early answer
