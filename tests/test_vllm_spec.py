"""The `vllm:` model spec (managed servers owned by the runtime) and the vLLM request fields."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import orjson
import pytest

from hyperteam.backends._process import wait_gone
from hyperteam.backends.vllm import ManagedModel
from hyperteam.cli import main as cli_main
from hyperteam.errors import ConfigError
from hyperteam.models import ChatRequest, EndpointModel, Runtime

STANDIN = f"{sys.executable} -m hyperteam.testing.vllm_standin"


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("HYPERTEAM_VLLM_BIN", STANDIN)
    monkeypatch.setenv("HYPERTEAM_STANDIN_ARGV_LOG", str(log))
    return log


def _started(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def test_vllm_spec_starts_shares_and_stops_managed_servers(standin: Path):
    from hyperteam.topologies import load_team

    spec = "vllm:Org/Model?replicas=2&max_num_seqs=4&extra=--dtype half"
    team = load_team("single")
    async with Runtime() as first:
        model = first.model(spec)
        assert isinstance(model, ManagedModel)
        result = await team.run("What is 2 + 3?", runtime=first, model=spec)
        assert result.answer and result.usage.calls == 1
        async with Runtime() as second:
            assert second.model(spec).group is model.group  # the same servers, not two more
        assert all(s.running() for s in model.group.servers)  # the other runtime still uses them
    started = _started(standin)
    assert len(started) == 2  # two replicas, started once
    assert all("--max-num-seqs 4 " in " ".join(s["argv"]) and s["argv"][-2:] == ["--dtype", "half"] for s in started)
    assert all("--api-key" in s["argv"] for s in started)  # a managed server is locked to this process
    assert wait_gone([s["pid"] for s in started], 10) == []  # the last runtime closed: stopped


def test_eval_with_a_vllm_model_stops_its_server_when_done(standin: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    args = ["eval", "demo", "--team", "single", "--model", "vllm:Org/Model", "--limit", "3", "--out", str(out)]
    assert cli_main([*args, "--no-progress"]) == 0
    assert json.loads((out / "report.json").read_text())["n"] == 3
    [started] = _started(standin)
    assert wait_gone([started["pid"]], 10) == []


def test_bad_vllm_specs_say_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HYPERTEAM_VLLM_BIN", str(tmp_path / "vllm"))
    with pytest.raises(ConfigError, match=r"the vLLM executable '.*vllm' was not found: pip install 'hyperteam"):
        Runtime().model("vllm:Org/Model")
    with pytest.raises(ConfigError, match="unknown vLLM option 'replica'"):
        Runtime().model("vllm:Org/Model?replica=2")
    with pytest.raises(ConfigError, match="replicas must be >= 1"):
        Runtime().model("vllm:Org/Model?replicas=0")
    with pytest.raises(ConfigError, match="name a model"):
        Runtime().model("vllm:?replicas=2")


def test_json_schema_is_sent_as_structured_outputs_to_vllm_and_response_format_to_openai():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = ChatRequest([{"role": "user", "content": "hi"}], json_schema=schema, n=4, seed=11, temperature=0.7)
    rt = Runtime()
    vllm_body = orjson.loads(EndpointModel(rt.endpoint("http://127.0.0.1:1/v1"), "m").body(request))
    assert vllm_body["structured_outputs"] == {"json": schema}
    assert not any(k.startswith("guided_") for k in vllm_body) and "response_format" not in vllm_body
    assert (vllm_body["n"], vllm_body["seed"]) == (4, 11)
    openai_body = orjson.loads(EndpointModel(rt.endpoint("https://x/v1"), "m", structured="openai").body(request))
    assert openai_body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert "structured_outputs" not in openai_body


async def test_n_samples_with_a_seed_come_back_from_one_request(standin: Path):
    from hyperteam.backends.vllm import VLLMOptions, VLLMServer

    server = VLLMServer("Org/Model", VLLMOptions())
    await asyncio.to_thread(lambda: server.start().wait_ready(30))
    try:
        async with Runtime() as rt:
            model = rt.model(server.spec)
            question = [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April. How many?"}]
            result = await model.chat(ChatRequest(question, n=5, seed=3, temperature=0.8))
            again = await model.chat(ChatRequest(question, n=5, seed=3, temperature=0.8))
    finally:
        server.stop()
    assert len(result.completions) == 5 and result.usage.calls == 1  # five samples, one call, one prefill
    assert [c.text for c in result.completions] == [c.text for c in again.completions]  # the seed fixes them


async def test_a_managed_server_that_fails_to_start_fails_every_call_with_its_log(
    standin: Path, monkeypatch: pytest.MonkeyPatch
):
    from hyperteam.backends.vllm import ServerStartError

    monkeypatch.setenv("HYPERTEAM_STANDIN_FAIL", "No CUDA GPUs are available")
    async with Runtime() as rt:
        model = rt.model("vllm:Org/Model")
        request = ChatRequest([{"role": "user", "content": "hi"}])
        with pytest.raises(ServerStartError, match="No CUDA GPUs are available"):
            await model.chat(request)
        with pytest.raises(ServerStartError, match="No CUDA GPUs are available"):
            await model.chat(request)  # at once, without starting it again
    assert len(_started(standin)) == 1


def test_a_hold_keeps_a_server_for_runtimes_that_open_and_close_in_turn(standin: Path):
    from hyperteam.backends import hold_servers
    from hyperteam.topologies import load_team

    team = load_team("single")

    async def one_step() -> None:
        async with Runtime() as runtime:  # as a training step: its own event loop and runtime
            assert (await team.run("What is 2 + 3?", runtime=runtime, model="vllm:Org/Model")).usage.calls == 1

    with hold_servers():
        for _ in range(3):
            asyncio.run(one_step())
        [started] = _started(standin)  # one server for the three steps
        assert wait_gone([started["pid"]], 0.5) == [started["pid"]]  # still running between them
    assert wait_gone([started["pid"]], 10) == []  # the hold ended: stopped
    asyncio.run(one_step())  # without a hold: a server of its own, stopped with its runtime
    assert len(_started(standin)) == 2 and wait_gone([s["pid"] for s in _started(standin)], 10) == []


def test_a_held_server_that_died_is_started_again_for_the_next_runtime(standin: Path):
    import os
    import signal

    from hyperteam.backends import hold_servers
    from hyperteam.topologies import load_team

    team = load_team("single")

    async def one_step() -> int:
        async with Runtime() as runtime:
            return (await team.run("What is 2 + 3?", runtime=runtime, model="vllm:Org/Model")).usage.calls

    with hold_servers():
        assert asyncio.run(one_step()) == 1
        [first] = _started(standin)
        os.kill(first["pid"], signal.SIGKILL)  # a crash between steps
        assert wait_gone([first["pid"]], 10) == []
        assert asyncio.run(one_step()) == 1  # a new server, not calls into a dead one
        assert len(_started(standin)) == 2
    assert wait_gone([s["pid"] for s in _started(standin)], 10) == []


def test_topology_training_starts_its_vllm_server_once(standin: Path, tmp_path: Path):
    pytest.importorskip("torch")
    out = tmp_path / "topo.json"
    args = ["train", "--topology", "hyperagent", "--team", "hyperagent-gsm8k", "--suite", "demo", "--train", "2",
            "--val", "2", "--batch", "2", "--epochs", "2", "--samples-per-query", "2", "--model", "vllm:Org/Model",
            "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0 and out.is_file()
    [started] = _started(standin)  # two steps and a validation, each with its own runtime: one server
    assert wait_gone([started["pid"]], 10) == []
