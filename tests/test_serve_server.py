"""`hyperteam serve` as a real process on a loopback port: the SDK, raw HTTP, live events, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import DATA_DIR
from tests.test_serve_support import KEY, auth

# Until the verb is wired into hyperteam.cli, the same parser and main are run directly.
_RUNNER = """
import argparse, sys
from hyperteam.errors import HyperteamError
from hyperteam.serve import cli
parser = argparse.ArgumentParser(prog="hyperteam serve")
cli.add_arguments(parser)
try:
    sys.exit(cli.main(parser.parse_args(sys.argv[1:])))
except HyperteamError as exc:
    print(f"hyperteam: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def _serve_command() -> list[str]:
    from hyperteam.cli import build_parser

    verbs = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if "serve" in verbs:
        return [sys.executable, "-m", "hyperteam.cli", "serve"]
    return [sys.executable, "-c", _RUNNER]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERTEAM_")}
    if DATA_DIR is not None:
        env["HYPERTEAM_DATA_DIR"] = str(DATA_DIR)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"# service keys\n\n{KEY}\n  sk-second-key  \n", encoding="utf-8")
    return path


def wait_healthy(url: str, proc: subprocess.Popen) -> None:
    """Waits until the served process answers /health (30 s at most); its stderr in the error otherwise."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.communicate()[1]}")
        time.sleep(0.1)


@pytest.fixture
def sim_url() -> Iterator[str]:
    """The simulated model as an HTTP server, 150 ms a call: long enough to watch a run as it goes."""
    from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess

    proc, url = start_sim_subprocess("--latency-ms", "150,0")
    try:
        yield url
    finally:
        stop_sim_subprocess(proc)


@pytest.fixture
def server(tmp_path: Path, sim_url: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    args = [
        "--team",
        "single",
        "--team",
        "ann-gsm8k",
        "--port",
        str(port),
        "--api-key-file",
        str(_key_file(tmp_path)),
        "--store",
        str(tmp_path / "runs.sqlite"),
        "--model",
        f"{sim_url}#sim-1.0",
        "--grace",
        "0",
    ]
    proc = subprocess.Popen(
        [*_serve_command(), *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_sdk_raw_http_live_events_and_graceful_shutdown(server, tmp_path):
    url, proc = server
    port = int(url.rsplit(":", 1)[1])

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["ann-gsm8k", "single"]
    completion = client.chat.completions.create(
        model="single", messages=[{"role": "user", "content": "What is 2 + 3?"}]
    )
    assert completion.choices[0].message.content and completion.usage.total_tokens > 0
    stream = client.chat.completions.create(
        model="ann-gsm8k", messages=[{"role": "user", "content": "What is 2 + 3?"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0).models.list()

    # curl-style: one raw HTTP/1.1 request, as bytes on a socket.
    body = json.dumps({"model": "single", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}).encode()
    raw = _raw_http(
        port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body,
    )
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(payload)["object"] == "chat.completion"
    raw = _raw_http(port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 401 ") and json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"]

    # Live events: the first agent event arrives while the run is still running.
    with httpx.Client(base_url=url, headers=auth(KEY), timeout=30) as http:
        run_id = http.post("/v1/runs", json={"team": "ann-gsm8k", "input": "What is 2 + 3?"}).json()["id"]
        statuses_at_first_trace = []
        events = []
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "trace" and not statuses_at_first_trace:
                        statuses_at_first_trace.append(http.get(f"/v1/runs/{run_id}").json()["status"])
        assert statuses_at_first_trace == ["running"]
        assert events[-1]["type"] == "status" and events[-1]["status"] == "succeeded"
        assert http.get(f"/v1/runs/{run_id}").json()["result"]["simulated"] is True
        metrics = http.get("/metrics").text
        assert 'hyperteam_llm_calls_total{team="ann-gsm8k"}' in metrics

        # A run still going at shutdown: the grace period passes, it is interrupted, the process exits 0.
        long_id = http.post("/v1/runs", json={"team": "ann-gsm8k", "input": "What is 2 + 3?"}).json()["id"]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(rec) for rec in lines)
    assert any(rec.get("route") == "/v1/chat/completions" and rec.get("status") == 200 for rec in lines)
    assert KEY not in stderr and "What is 2 + 3?" not in stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        (status,) = db.execute("SELECT status FROM runs WHERE id = ?", (long_id,)).fetchone()
    assert status == "interrupted"
    assert any("interrupting 1 run" in rec["message"] for rec in lines)


def _serve_once(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_serve_command(), *args], env=_env(), capture_output=True, text=True, timeout=60)


def test_missing_key_file_and_duplicate_teams_are_one_line_errors(tmp_path):
    missing = _serve_once("--team", "single", "--api-key-file", str(tmp_path / "nope.txt"), "--port", "1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "cannot read API key file" in missing.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n", encoding="utf-8")
    no_keys = _serve_once("--team", "single", "--api-key-file", str(empty), "--port", "1")
    assert no_keys.returncode == 2 and "holds no key" in no_keys.stderr
    dupes = _serve_once("--team", "single", "--team", "single", "--port", "1")
    assert dupes.returncode == 2 and "two served teams are named 'single'" in dupes.stderr


def test_read_api_keys_skips_comments_and_blank_lines(tmp_path):
    from hyperteam.serve.cli import read_api_keys

    assert read_api_keys(_key_file(tmp_path)) == [KEY, "sk-second-key"]
