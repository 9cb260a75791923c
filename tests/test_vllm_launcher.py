"""The vLLM launcher's lifecycle, against the stand-in executable (the simulated model behind `vllm serve`'s CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from hyperteam.backends._process import wait_gone
from hyperteam.backends.vllm import ServerStartError, VLLMOptions, VLLMServer
from hyperteam.errors import ConfigError

STANDIN = f"{sys.executable} -m hyperteam.testing.vllm_standin"


def _chat(server: VLLMServer, content: str = "What is 2 + 3?") -> tuple[int, dict]:
    body = {"model": server.served_name, "messages": [{"role": "user", "content": content}]}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.options.api_key}"}
    req = urllib.request.Request(f"{server.base_url}/chat/completions", orjson.dumps(body), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _health(server: VLLMServer) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=2) as resp:
            return resp.status
    except OSError:
        return 0


def test_ready_only_after_a_real_completion_and_flags_reach_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    argv_log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("HYPERTEAM_STANDIN_LOAD_S", "2")
    monkeypatch.setenv("HYPERTEAM_STANDIN_ARGV_LOG", str(argv_log))
    monkeypatch.setenv("HYPERTEAM_VLLM_BIN", STANDIN)  # the environment variable picks the executable
    options = VLLMOptions(
        served_model_name="qwen",
        max_num_seqs=8,
        gpu_memory_utilization=0.45,
        max_model_len=4096,
        tensor_parallel_size=2,
        api_key="secret",
        extra_args=("--dtype", "half"),
    )
    server = VLLMServer("Qwen/Qwen2.5-7B-Instruct", options).start()
    try:
        deadline = time.monotonic() + 10
        while _health(server) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _health(server) == 200  # healthy, but still loading:
        assert _chat(server)[0] == 503
        assert not server.ready
        server.wait_ready(timeout_s=20)
        status, payload = _chat(server)
        assert status == 200 and payload["choices"][0]["message"]["content"]
        assert server.spec == f"http://127.0.0.1:{server.port}/v1#qwen"
        models = urllib.request.Request(f"{server.base_url}/models", headers={"Authorization": "Bearer secret"})
        with urllib.request.urlopen(models, timeout=5) as resp:
            assert [m["id"] for m in orjson.loads(resp.read())["data"]] == ["qwen"]
        with pytest.raises(urllib.error.HTTPError) as refused:  # --api-key reached the server: no key, no answer
            urllib.request.urlopen(f"{server.base_url}/models", timeout=5)
        assert refused.value.code == 401
    finally:
        server.stop()
    argv = json.loads(argv_log.read_text().splitlines()[0])["argv"]
    assert argv[:2] == ["serve", "Qwen/Qwen2.5-7B-Instruct"]
    flags = " ".join(argv)
    for expected in (
        f"--port {server.port}",
        "--served-model-name qwen",
        "--enable-prefix-caching",
        "--max-num-seqs 8",
        "--gpu-memory-utilization 0.45",
        "--max-model-len 4096",
        "--tensor-parallel-size 2",
        "--api-key secret",
        "--dtype half",
    ):
        assert expected in flags


def test_a_server_that_dies_at_start_fails_with_its_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HYPERTEAM_STANDIN_FAIL", "CUDA out of memory. Tried to allocate 20.00 GiB")
    server = VLLMServer("Org/Model", VLLMOptions(vllm_bin=STANDIN), log_file=tmp_path / "vllm.log")
    with pytest.raises(ServerStartError) as info:
        server.start().wait_ready(timeout_s=30)
    message = str(info.value)
    assert "exited with code 1 before it was ready" in message
    assert "CUDA out of memory. Tried to allocate 20.00 GiB" in message
    assert str(tmp_path / "vllm.log") in message


def test_a_server_that_never_answers_times_out_and_is_stopped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HYPERTEAM_STANDIN_LOAD_S", "60")
    server = VLLMServer("Org/Model", VLLMOptions(vllm_bin=STANDIN)).start()
    with pytest.raises(ServerStartError, match=r"gave no completion within 1 s \(completion answered HTTP 503\)"):
        server.wait_ready(timeout_s=1)
    assert not server.running()
    assert wait_gone([server.pid], 5) == []


def test_a_server_started_from_a_short_lived_thread_lives_on_and_stops_cleanly(tmp_path: Path):
    server = VLLMServer("Org/Model", VLLMOptions(vllm_bin=STANDIN), log_file=tmp_path / "vllm.log")
    starter = threading.Thread(target=server.start)  # e.g. asyncio.to_thread: the thread ends at once
    starter.start()
    starter.join()
    with server:
        pid = server.pid
        time.sleep(0.3)
        assert server.running() and _chat(server)[0] == 200
    assert server.proc is not None and server.proc.returncode == 0  # it shut down on SIGTERM, not SIGKILL
    assert "stand-in vLLM stopped" in (tmp_path / "vllm.log").read_text()
    assert wait_gone([pid], 5) == []


def test_several_models_and_replicas_then_no_orphans_after_the_parent_is_killed(tmp_path: Path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from hyperteam.backends.vllm import ServerGroup, VLLMOptions, VLLMServer
            options = VLLMOptions(vllm_bin={STANDIN!r}, replicas=2, gpu_memory_utilization=0.3)
            group = ServerGroup("Org/A", options).start()
            other = VLLMServer("Org/B", VLLMOptions(vllm_bin={STANDIN!r}, gpu_memory_utilization=0.4)).start()
            group.wait_ready(30)
            other.wait_ready(30)
            print(group.spec, other.spec, flush=True)
            print(*[s.pid for s in [*group.servers, other]], flush=True)
            time.sleep(120)
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        group_spec, other_spec = parent.stdout.readline().split()
        pids = [int(p) for p in parent.stdout.readline().split()]
        urls = [*group_spec.partition("#")[0].split(","), other_spec.partition("#")[0]]
        assert len(set(urls)) == 3  # three servers, three ports
        for url, name in zip(urls, ["Org/A", "Org/A", "Org/B"], strict=True):
            server = VLLMServer(name, VLLMOptions(api_key="unused"), port=int(url.rsplit(":", 1)[1].split("/")[0]))
            status, payload = _chat(server)
            assert status == 200 and payload["model"] == name
        assert len(pids) == 3 and all(wait_gone([p], 0) == [p] for p in pids)  # all three running
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_gone(pids, 10) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_serve_model_cli_serves_until_ctrl_c(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "HYPERTEAM_VLLM_BIN"}
    cmd = [sys.executable, "-m", "hyperteam.cli", "serve-model", "Org/M", "--replicas", "2", "--vllm-bin", STANDIN]
    proc = subprocess.Popen(
        [*cmd, "--dtype", "half"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = []
        while not (lines and lines[-1].startswith("ready: ")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        spec = lines[-1].removeprefix("ready: ").strip()
        urls, _, name = spec.partition("#")
        assert name == "Org/M" and len(set(urls.split(","))) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for url in urls.split(","):
        with pytest.raises(OSError):
            urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=2)


def test_bad_vllm_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown vLLM option 'bogus'"):
        VLLMOptions.from_query("bogus=1")
    with pytest.raises(ConfigError, match="max_num_seqs: bad value 'many'"):
        VLLMOptions.from_query("max_num_seqs=many")
    done = subprocess.run(
        [sys.executable, "-m", "hyperteam.cli", "serve-model", "Org/M", "--replicas", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "hyperteam: error: replicas must be >= 1, got 0"


def test_replicas_get_their_own_gpus_where_there_are_enough():
    options = VLLMOptions(replicas=2, tensor_parallel_size=2, devices="0,1,2,3")
    assert options.device_sets() == ["0,1", "2,3"]
    assert VLLMOptions(replicas=3, devices="0,1").device_sets() == ["0,1", "0,1", "0,1"]  # they share
    assert VLLMOptions(replicas=2).device_sets() == [None, None]  # inherited
