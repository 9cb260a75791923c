"""`hyperteam serve` as a real process: header limits, slow clients, and disconnects seen by the model server."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hyperteam.agents.agent import Agent
from hyperteam.topologies.layered import Layer, LayeredTeam
from tests.test_serve_server import _env, _free_port, _key_file, _serve_command, wait_healthy
from tests.test_serve_support import KEY, auth


@contextmanager
def serving(tmp_path: Path, *args: str, team: str = "single", model: str = "sim:1.0") -> Iterator[tuple[str, int]]:
    """A `hyperteam serve` process on a free port; yields its URL and pid."""
    port = _free_port()
    command = [*_serve_command(), "--team", team, "--port", str(port), "--api-key-file", str(_key_file(tmp_path))]
    command += ["--store", str(tmp_path / "runs.sqlite"), "--model", model, "--grace", "0", *args]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    try:
        yield url, proc.pid
    finally:
        proc.kill()
        proc.communicate()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _send_and_read(port: int, head: bytes, pad: int, chunk: int = 1 << 20) -> bytes:
    """Sends ``head`` and then ``pad`` bytes of a header value that never ends; returns what came back."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def read() -> None:
            try:
                while data := sock.recv(65536):
                    got.extend(data)
            except OSError:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        try:
            sock.sendall(head)
            block = b"a" * chunk
            for _ in range(pad // chunk):
                sock.sendall(block)
        except OSError:
            pass  # refused: the server stopped reading
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reader.join(10)
    return bytes(got)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the service's memory")
def test_unfinished_huge_headers_are_refused_without_growing_memory(tmp_path):
    with serving(tmp_path) as (url, pid):
        port = _port(url)
        httpx.get(f"{url}/v1/models", headers=auth(KEY))  # warm: imports and first-request allocations
        before, peak, done = _rss_mib(pid), [0.0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mib(pid))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        answers: list[bytes] = [b""] * 8
        head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "

        def attack(i: int) -> None:
            answers[i] = _send_and_read(port, head, 32 << 20)

        attackers = [threading.Thread(target=attack, args=(i,)) for i in range(8)]
        for t in attackers:
            t.start()
        for t in attackers:
            t.join(60)
        done.set()
        watcher.join()
        growth = peak[0] - before
        print(f"\n8 unfinished 32 MiB heads: service RSS {before:.1f} -> peak {peak[0]:.1f} MiB (+{growth:.1f})")
        assert growth < 64, f"memory grew {growth:.1f} MiB"
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "headers_too_large"
        # The service still answers.
        assert httpx.get(f"{url}/v1/models", headers=auth(KEY)).status_code == 200


def test_header_count_and_size_limits_and_slow_clients(tmp_path):
    args = ("--max-header-bytes", "4096", "--max-headers", "20", "--read-timeout", "1")
    with serving(tmp_path, *args) as (url, _):
        port = _port(url)
        key = f"Authorization: Bearer {KEY}\r\n".encode()
        ok_head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + key + b"X-Pad: " + b"a" * 3000 + b"\r\n\r\n"
        assert _send_and_read(port, ok_head, 0).startswith(b"HTTP/1.1 200 ")
        many = (
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + key + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n"
        )
        assert _send_and_read(port, many, 0).startswith(b"HTTP/1.1 431 ")
        big = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + key + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n"
        assert _send_and_read(port, big, 0).startswith(b"HTTP/1.1 431 ")

        # A slow client: half a request head, then nothing.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
            answer = sock.recv(65536)
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.8 < took < 5, (answer[:100], took)
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"

        # A body that stops halfway: the request is dropped, and the service goes on.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + key + b"Content-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"model": '
            )
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""
        assert httpx.get(f"{url}/v1/models", headers=auth(KEY)).status_code == 200


def _team_file(tmp_path: Path, layers: int) -> str:
    team = LayeredTeam(
        [
            Layer(f"step{i}", agents=[Agent(name=f"a{i}", instructions="Solve. End with #### N.")])
            for i in range(layers)
        ],
        name="chain",
    )
    path = tmp_path / "chain.json"
    team.save(path)
    return str(path)


@pytest.fixture
def logged_sim(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The simulated model server, 250 ms a call, logging each request's arrival."""
    from hyperteam.testing.sim import start_sim_subprocess, stop_sim_subprocess

    log = tmp_path / "sim-requests.jsonl"
    proc, url = start_sim_subprocess("--latency-ms", "250,0", "--request-log", str(log))
    try:
        yield url, log
    finally:
        stop_sim_subprocess(proc)


def _arrivals(log: Path) -> list[float]:
    time.sleep(0.3)  # the simulator writes its log every 0.1 s
    return [json.loads(line)["t"] for line in log.read_text().splitlines() if line.strip()]


def test_a_disconnected_client_stops_its_run_at_the_model_server(tmp_path, logged_sim):
    sim_url, log = logged_sim
    body = json.dumps({"model": "chain", "messages": [{"role": "user", "content": "What is 2 + 3?"}]})
    with serving(tmp_path, team=_team_file(tmp_path, 8), model=f"{sim_url}#sim-1.0") as (url, _):
        port = _port(url)
        gone: list[float] = []
        for stream in (False, True):
            data = json.dumps({**json.loads(body), "stream": stream}).encode()
            request = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
            ) + data
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                if stream:
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")  # the first chunk
                else:
                    time.sleep(0.5)
            gone.append(time.time())
            time.sleep(1.5)  # long enough for several more calls, were the run going on
        arrivals = _arrivals(log)
    # 8 calls of 250 ms each would run for 2 s; each run made at most 3 before its client left.
    plain = [t for t in arrivals if t < gone[0] + 1.0]
    streamed = [t for t in arrivals if t > gone[0] + 1.0]
    late = [max(plain) - gone[0], max(streamed) - gone[1]] if plain and streamed else None
    print(f"\nmodel calls: plain {len(plain)}, streamed {len(streamed)}; last arrival after disconnect (s): {late}")
    assert 1 <= len(plain) <= 3 and 1 <= len(streamed) <= 3, (gone, arrivals)
    assert all(t <= gone[0] + 1.0 for t in plain) and all(t <= gone[1] + 1.0 for t in streamed)
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        rows = db.execute("SELECT status, error FROM runs ORDER BY created_at").fetchall()
    assert [status for status, _ in rows] == ["cancelled", "cancelled"]
    assert all(json.loads(error)["kind"] == "client_disconnected" for _, error in rows)
