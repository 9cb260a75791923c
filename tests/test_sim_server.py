"""The simulated model's HTTP server, through real loopback connections."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from hyperteam.models.tokenizer import count_message_tokens, count_tokens
from hyperteam.testing.sim import LatencyModel, SimBrain, SimServer, start_sim_subprocess, stop_sim_subprocess
from tests.conftest import DATA_DIR

QUESTION = "A farmer has 12 cows and buys 30 more. How many cows does the farmer have?"
MESSAGES = [{"role": "user", "content": QUESTION}]
NO_LATENCY = LatencyModel(0, 0)


@pytest.fixture
def brain(tmp_path: Path) -> SimBrain:
    return SimBrain(data_dir=tmp_path)  # no suites: the server tests need no data


async def _started(server: SimServer) -> SimServer:
    await server.start()
    return server


@pytest_asyncio.fixture
async def server(brain: SimBrain) -> AsyncIterator[SimServer]:
    srv = await _started(SimServer(brain, latency=NO_LATENCY))
    yield srv
    await srv.close()


def _client(server: SimServer, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url.removesuffix("/v1"), timeout=timeout)


def _chat(**extra: object) -> dict[str, object]:
    return {"model": "sim-0.8", "messages": MESSAGES, **extra}


async def _wait_for(predicate: object, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.asyncio
async def test_health_and_models(server: SimServer) -> None:
    async with _client(server) as client:
        assert (await client.get("/health")).json() == {"status": "ok", "simulated": True}
        models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert {"sim", "sim-0.8"} <= {m["id"] for m in models["data"]}
    assert "any model name" in models["note"]


@pytest.mark.asyncio
async def test_chat_completion_shape_usage_and_n(server: SimServer) -> None:
    async with _client(server) as client:
        response = await client.post("/v1/chat/completions", json=_chat(n=3, temperature=0.7, seed=5))
        again = await client.post("/v1/chat/completions", json=_chat(n=3, temperature=0.7, seed=5))
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion" and body["model"] == "sim-0.8"
    assert body["id"] and isinstance(body["created"], int)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in body["choices"]]
    assert len(set(texts)) == 3 and all("\n#### " in t for t in texts)
    assert all(c["finish_reason"] == "stop" and c["logprobs"] is None for c in body["choices"])
    assert all(c["message"]["role"] == "assistant" for c in body["choices"])
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_message_tokens(MESSAGES)
    assert usage["completion_tokens"] == sum(count_tokens(t) for t in texts)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert [c["message"]["content"] for c in again.json()["choices"]] == texts  # deterministic


@pytest.mark.asyncio
async def test_streaming_through_the_openai_sdk(server: SimServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0)
    plain = await client.chat.completions.create(model="sim", messages=MESSAGES, n=2, seed=1)  # type: ignore[arg-type]
    stream = await client.chat.completions.create(
        model="sim",
        messages=MESSAGES,  # type: ignore[arg-type]
        n=2,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts = {0: "", 1: ""}
    finishes = {}
    usage = None
    async for event in stream:
        for choice in event.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        usage = event.usage or usage
    await client.close()
    assert [texts[0], texts[1]] == [c.message.content for c in plain.choices]
    assert finishes == {0: "stop", 1: "stop"}
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_bad_requests_get_openai_error_bodies(server: SimServer) -> None:
    async with _client(server) as client:
        bad_json = await client.post("/v1/chat/completions", content=b"{not json")
        no_messages = await client.post("/v1/chat/completions", json={"model": "sim"})
        bad_n = await client.post("/v1/chat/completions", json=_chat(n=0))
        unknown = await client.get("/v2/whatever")
        wrong_method = await client.get("/v1/chat/completions")

        async def chunks() -> AsyncIterator[bytes]:
            yield json.dumps(_chat()).encode()

        chunked = await client.post("/v1/chat/completions", content=chunks())
        still_ok = await client.get("/health")  # a fresh connection after the refusal
    for response, status in ((bad_json, 400), (no_messages, 400), (bad_n, 400), (unknown, 404), (wrong_method, 405)):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert no_messages.json()["error"]["param"] == "messages"
    assert "/v2/whatever" in unknown.json()["error"]["message"]
    assert chunked.status_code == 411 and still_ok.status_code == 200


@pytest.mark.asyncio
async def test_latency_follows_the_model(brain: SimBrain) -> None:
    server = await _started(SimServer(brain, latency=LatencyModel(ttft_ms=100, per_token_ms=1)))
    try:
        async with _client(server) as client:
            await client.post("/v1/chat/completions", json=_chat())  # the brain reads its suites on first use
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=_chat())
            elapsed = time.perf_counter() - started
    finally:
        await server.close()
    expected = 0.1 + 0.001 * response.json()["usage"]["completion_tokens"]
    assert expected <= elapsed < expected + 0.15


@pytest.mark.asyncio
async def test_concurrency_limit_queues_requests(brain: SimBrain, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    server = await _started(SimServer(brain, latency=LatencyModel(100, 0), max_concurrency=2, request_log=log))
    try:
        async with _client(server) as client:
            started = time.perf_counter()
            responses = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=_chat(seed=i)) for i in range(6))
            )
            elapsed = time.perf_counter() - started
    finally:
        await server.close()
    assert all(r.status_code == 200 for r in responses)
    assert 0.3 <= elapsed < 0.6
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == 6 and max(e["in_flight"] for e in entries) == 6
    assert sum(e["queue_ms"] >= 90 for e in entries) == 4
    assert all(e["service_ms"] >= 95 and e["status"] == 200 for e in entries)


@pytest.mark.asyncio
async def test_request_log_lines(brain: SimBrain, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    server = await _started(SimServer(brain, latency=NO_LATENCY, request_log=log))
    try:
        async with _client(server) as client:
            for seed in (1, 1, 2):
                await client.post("/v1/chat/completions", json=_chat(seed=seed))
            await client.post("/v1/chat/completions", json=_chat(seed=1, temperature=0.5))
            await asyncio.sleep(0.25)  # flushed within 100 ms, before close
            entries = [json.loads(line) for line in log.read_text().splitlines()]
    finally:
        await server.close()
    assert len(entries) == 4
    first = entries[0]
    assert set(first) == {
        "t", "key", "model", "in_flight", "status", "fault",
        "prompt_tokens", "completion_tokens", "queue_ms", "service_ms",
    }  # fmt: skip
    assert first["model"] == "sim-0.8" and first["status"] == 200 and first["fault"] is None
    assert first["in_flight"] == 1 and first["completion_tokens"] > 0 and abs(first["t"] - time.time()) < 60
    assert entries[0]["key"] == entries[1]["key"] != entries[2]["key"]
    assert entries[3]["key"] not in (entries[0]["key"], entries[2]["key"])  # the temperature is part of the key
    assert all(len(e["key"]) == 32 and set(e["key"]) <= set("0123456789abcdef") for e in entries)


async def _faulty(brain: SimBrain, kind: str, log: Path | None = None, latency: LatencyModel = NO_LATENCY) -> SimServer:
    return await _started(SimServer(brain, latency=latency, fault_rate=1.0, faults=(kind,), request_log=log))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["429", "500", "503"])
async def test_http_error_faults(brain: SimBrain, kind: str) -> None:
    server = await _faulty(brain, kind)
    try:
        async with _client(server) as client:
            response = await client.post("/v1/chat/completions", json=_chat())
    finally:
        await server.close()
    assert response.status_code == int(kind)
    assert "simulated fault" in response.json()["error"]["message"]
    if kind == "429":
        assert response.headers["retry-after"] == "1" and response.headers["retry-after-ms"] == "1000"
    assert server.in_flight == 0


@pytest.mark.asyncio
async def test_drop_fault_closes_without_response(brain: SimBrain, tmp_path: Path) -> None:
    server = await _faulty(brain, "drop", tmp_path / "log.jsonl")
    try:
        async with _client(server) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/v1/chat/completions", json=_chat())
    finally:
        await server.close()
    assert json.loads((tmp_path / "log.jsonl").read_text())["status"] == "drop"


@pytest.mark.asyncio
async def test_hang_ends_when_the_client_gives_up(brain: SimBrain, tmp_path: Path) -> None:
    server = await _faulty(brain, "hang", tmp_path / "log.jsonl")
    try:
        async with _client(server, timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/chat/completions", json=_chat())
        assert await _wait_for(lambda: server.in_flight == 0)
    finally:
        await server.close()
    entry = json.loads((tmp_path / "log.jsonl").read_text())
    assert entry["status"] == "hang" and entry["fault"] == "hang"


@pytest.mark.asyncio
async def test_malformed_fault_is_not_json(brain: SimBrain) -> None:
    server = await _faulty(brain, "malformed")
    try:
        async with _client(server) as client:
            response = await client.post("/v1/chat/completions", json=_chat())
    finally:
        await server.close()
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.asyncio
async def test_fault_sequence_is_reproducible(brain: SimBrain) -> None:
    async def statuses() -> list[int]:
        server = await _started(SimServer(brain, latency=NO_LATENCY, fault_rate=0.5, faults=("500", "503"), seed=7))
        try:
            async with _client(server) as client:
                return [(await client.post("/v1/chat/completions", json=_chat())).status_code for _ in range(20)]
        finally:
            await server.close()

    first = await statuses()
    assert first == await statuses()
    assert {200, 500, 503} <= set(first)


@pytest.mark.asyncio
async def test_client_leaving_mid_request_leaves_in_flight(brain: SimBrain, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    server = await _started(SimServer(brain, latency=LatencyModel(2000, 0), max_concurrency=1, request_log=log))
    try:
        async with _client(server, timeout=0.2) as client:
            results = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=_chat(seed=i)) for i in range(3)), return_exceptions=True
            )
        assert all(isinstance(r, httpx.ReadTimeout) for r in results)
        assert await _wait_for(lambda: server.in_flight == 0)
        # The freed slot serves the next client at once.
        async with _client(server, timeout=3) as client:
            server.latency = LatencyModel(50, 0)
            assert (await client.post("/v1/chat/completions", json=_chat())).status_code == 200
    finally:
        await server.close()
    statuses = [json.loads(line)["status"] for line in log.read_text().splitlines()]
    assert statuses == [499, 499, 499, 200]


def test_subprocess_server_answers_and_stops_cleanly(tmp_path: Path) -> None:
    data = DATA_DIR
    args = ["--latency-ms", "0", "--accuracy", "0.9"] + (["--data-dir", str(data)] if data else [])
    proc, url = start_sim_subprocess(*args)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="sim", messages=MESSAGES)  # type: ignore[arg-type]
        assert reply.choices[0].message.content and "#### " in reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.prompt_tokens == count_message_tokens(MESSAGES)
    finally:
        assert stop_sim_subprocess(proc) == 0


def test_the_cli_can_hide_its_slots_and_stall_streams(tmp_path: Path) -> None:
    proc, url = start_sim_subprocess("--latency-ms", "0", "--no-slot-report", "--fault-rate", "1", "--faults", "stall")
    try:
        root = url.removesuffix("/v1")
        assert [httpx.get(root + path).status_code for path in ("/props", "/metrics")] == [404, 404]
        pieces: list[str] = []
        timeout = httpx.Timeout(5.0, read=1.0)
        with httpx.stream("POST", url + "/chat/completions", json=_chat(stream=True), timeout=timeout) as reply:
            assert reply.status_code == 200
            with pytest.raises(httpx.ReadTimeout):  # the first piece, then nothing for a second (ever)
                pieces.extend(line for line in reply.iter_lines() if line.startswith("data: "))
    finally:
        assert stop_sim_subprocess(proc) == 0
    assert pieces and '"content":"' in pieces[-1]  # it began an answer
    assert not any("[DONE]" in p or '"finish_reason":"' in p for p in pieces)  # and never ended it


@pytest.mark.parametrize("bad", [["--accuracy", "1.5"], ["--latency-ms", "fast"], ["--faults", "429,boom"]])
def test_cli_rejects_bad_values_with_exit_2(bad: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hyperteam.testing.sim.cli", "--port", "0", *bad],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1 and "error" in result.stderr


@pytest.mark.asyncio
async def test_an_api_key_guards_every_v1_route_but_not_health(brain: SimBrain) -> None:
    srv = await _started(SimServer(brain, latency=NO_LATENCY, api_key="sk-sim"))
    try:
        async with _client(srv) as client:
            assert (await client.get("/health")).status_code == 200
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = await client.post("/v1/chat/completions", json=_chat(), headers=headers)
                assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
                assert (await client.get("/v1/models", headers=headers)).status_code == 401
            ok = await client.post("/v1/chat/completions", json=_chat(), headers={"Authorization": "Bearer sk-sim"})
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
    finally:
        await srv.close()
