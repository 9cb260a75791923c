"""Real-server behaviour the client must meet: few slots, no ``n``, hangs told from slow answers.

Against the simulator over loopback HTTP (as a server in another process would be) and small
aiohttp servers that behave as llama.cpp's does.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp import web

from hyperteam.models import ChatRequest, Endpoint, EndpointModel, RetryPolicy, Runtime
from hyperteam.models.capacity import slots_from_props, vllm_gauges
from hyperteam.models.limits import AdaptiveLimit
from hyperteam.testing.sim import LatencyModel, SimBrain, SimServer
from tests.aiohttp_loopback import aiohttp_server

QUESTION = "A farmer has 12 cows and buys 30 more. How many cows does the farmer have?"


def _request(**kw: object) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": QUESTION}], **kw)  # type: ignore[arg-type]


async def _sim(tmp_path: Path, **kw: object) -> SimServer:
    server = SimServer(SimBrain(data_dir=tmp_path), request_log=tmp_path / "requests.jsonl", **kw)  # type: ignore[arg-type]
    await server.start()
    return server


_fake_server = aiohttp_server


def _log(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]


async def test_a_server_that_reports_its_slots_gets_no_more_than_that_in_flight(tmp_path):
    server = await _sim(tmp_path, latency=LatencyModel(20, 1), max_concurrency=4)
    try:
        async with Runtime() as rt:  # no limit given: the server's /props says 4
            model = rt.model(f"{server.url}#sim-0.8")
            results = await asyncio.gather(*(model.chat(_request(seed=i)) for i in range(40)))
            stats = rt.endpoint_stats()[0]
    finally:
        await server.close()
    assert all(r.text for r in results)
    assert (stats["limit"], stats["source"]) == (4, "server")
    entries = _log(tmp_path)
    assert len(entries) == 40 and all(e["status"] == 200 for e in entries)
    assert max(e["in_flight"] for e in entries) == 4  # never a queue at the server


async def test_a_silent_server_with_two_slots_is_learned_and_never_flooded(tmp_path):
    # As llama-cpp-python's server: it says nothing about its capacity.
    server = await _sim(tmp_path, latency=LatencyModel(20, 4), max_concurrency=2, report_slots=False)
    try:
        async with Runtime() as rt:
            model = rt.model(f"{server.url}#sim-0.8")
            results = await asyncio.gather(*(model.chat(_request(seed=i)) for i in range(30)))
            stats = rt.endpoint_stats()[0]
    finally:
        await server.close()
    assert all(r.text for r in results)
    assert stats["source"] == "adaptive" and stats["limit"] <= 3
    entries = _log(tmp_path)
    assert all(e["status"] == 200 for e in entries)
    assert max(e["in_flight"] for e in entries) <= 2 + 2  # its slots plus a small queue, while probing
    assert sum(e["queue_ms"] > 50 for e in entries) <= 6  # most requests never waited at the server


async def test_a_user_set_limit_wins_over_what_the_server_says(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERTEAM_MAX_CONCURRENCY", "6")
    server = await _sim(tmp_path, latency=LatencyModel(20, 1), max_concurrency=2)
    try:
        async with Runtime() as rt:
            model = rt.model(f"{server.url}#sim-0.8")
            await asyncio.gather(*(model.chat(_request(seed=i)) for i in range(24)))
            stats = rt.endpoint_stats()[0]
    finally:
        await server.close()
    assert (stats["limit"], stats["source"]) == (6, "user")
    assert max(e["in_flight"] for e in _log(tmp_path)) == 6


async def test_a_server_that_stalls_mid_answer_is_cut_after_the_no_progress_bound(tmp_path):
    server = await _sim(tmp_path, latency=LatencyModel(50, 20), fault_rate=1.0, faults=["stall"])
    policy = RetryPolicy(stall_s=0.5)
    try:
        model = EndpointModel(Endpoint(server.url, retry=policy, capacity=8), "sim-0.8")
        started = time.perf_counter()
        with pytest.raises(Exception, match=r"stalled: no progress for 0\.5") as info:
            await model.chat(_request())
        elapsed = time.perf_counter() - started
        await model.endpoint.close()
    finally:
        await server.close()
    assert info.value.kind == "stalled"  # type: ignore[attr-defined]
    assert 0.5 <= elapsed < 1.2  # cut at the bound, counted from the last piece that arrived


async def test_a_slow_but_steady_answer_completes_past_several_no_progress_bounds(tmp_path):
    # Pieces arrive every ~0.5 s for ~2.5 s; nothing is silent for the 1 s bound, so nothing is cut.
    server = await _sim(tmp_path, latency=LatencyModel(100, 0))
    try:
        policy = RetryPolicy(stall_s=1.0)
        model = EndpointModel(Endpoint(server.url, retry=policy, capacity=8), "sim-0.8")
        probe = await model.chat(_request())
        tokens = probe.usage.completion_tokens
        server.latency = LatencyModel(100, 2400 / tokens)  # the same answer again takes ~2.5 s
        started = time.perf_counter()
        result = await model.chat(_request())
        elapsed = time.perf_counter() - started
        await model.endpoint.close()
    finally:
        await server.close()
    assert result.text == probe.text and result.usage.completion_tokens == tokens
    assert elapsed > 2.0  # twice the no-progress bound: a fixed deadline of 2 s would have cut it


class _OneChoice:
    """Answers like llama.cpp's server: one choice whatever ``n`` says; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        return await self.handle_body(body)

    async def handle_body(self, body: dict) -> web.Response:
        text = f"#### {body.get('seed')}"
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3},
            }
        )


async def test_samples_a_server_does_not_return_are_asked_separately_and_remembered():
    fake = _OneChoice()
    async with _fake_server([("post", "/v1/chat/completions", fake.handle)]) as url:
        endpoint = Endpoint(url, capacity=4)
        model = EndpointModel(endpoint, "m")
        first = await model.chat(_request(n=5, seed=7, temperature=0.7))
        second = await model.chat(_request(n=5, seed=7, temperature=0.7))
        await endpoint.close()
    assert [c.text for c in first.completions] == ["#### 7", "#### 8", "#### 9", "#### 10", "#### 11"]
    assert first.usage.calls == 5 and first.usage.completion_tokens == 15
    assert [c.text for c in second.completions] == [c.text for c in first.completions]
    assert [b.get("n") for b in fake.asked] == [5, None, None, None, None] + [None] * 5  # remembered
    assert any("n=5" in note for note in endpoint.notes)


def test_capacity_is_read_from_llama_cpp_props_and_vllm_gauges():
    assert slots_from_props(b'{"total_slots": 4, "default_generation_settings": {}}') == 4
    assert slots_from_props(b'{"total_slots": true}') is None and slots_from_props(b"nope") is None
    metrics = (
        b'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 7.0\n'
        b'vllm:num_requests_waiting{model_name="m"} 3.0\n'
    )
    assert vllm_gauges(metrics) == (7.0, 3.0)
    assert vllm_gauges(b"process_cpu_seconds_total 3\n") is None


async def test_aimd_halves_on_queueing_once_per_round_trip_and_creeps_back():
    limit = AdaptiveLimit(64, start=8, source="adaptive")
    limit.observe(sent_at=0.0, now=0.1, first_byte_s=0.1)  # the fastest first token: 0.1 s
    limit.observe(sent_at=0.0, now=3.0, first_byte_s=3.0)  # waited in the server's queue
    assert limit.limit == 4 and limit.cuts == 1
    limit.observe(sent_at=0.0, now=3.1, first_byte_s=3.1)  # sent before the cut: no second cut
    assert limit.limit == 4
    async with limit:  # at the limit, a reply that did not wait raises it slowly
        limit.in_flight = 4
        for _ in range(16):
            limit.observe(sent_at=4.0, now=4.2, first_byte_s=0.1)
        limit.in_flight = 1
    assert limit.limit == 5


async def test_a_vllm_queue_in_its_metrics_brings_the_limit_down_to_what_it_runs():
    ok = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "#### 5"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
    }

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(1.5)
        return web.json_response(ok)

    async def metrics(request: web.Request) -> web.Response:
        body = 'vllm:num_requests_running{model_name="m"} 3.0\nvllm:num_requests_waiting{model_name="m"} 5.0\n'
        return web.Response(text=body)

    async with _fake_server([("post", "/v1/chat/completions", chat), ("get", "/metrics", metrics)]) as url:
        endpoint = Endpoint(url, max_concurrency=64)
        model = EndpointModel(endpoint, "m")
        calls = [asyncio.ensure_future(model.chat(_request())) for _ in range(12)]
        await asyncio.sleep(0.5)
        assert endpoint.limit.source == "metrics" and endpoint.limit.in_flight == 12  # no queue seen yet
        await asyncio.gather(*calls)
        assert endpoint.limit.limit == 3  # the server ran 3 with 5 waiting: 3 in flight from then on
        await endpoint.close()


async def test_a_call_queued_behind_a_slow_answer_is_not_cut_while_that_answer_moves(tmp_path):
    # One slot, two requests (a user-set limit of 2): the second waits ~2.5 s at the server for
    # its first byte, longer than the 1 s bound, but the answer ahead keeps arriving: not a hang.
    server = await _sim(tmp_path, latency=LatencyModel(100, 0), max_concurrency=1)
    try:
        policy = RetryPolicy(stall_s=1.0)
        endpoint = Endpoint(server.url, retry=policy, capacity=2)
        model = EndpointModel(endpoint, "sim-0.8")
        tokens = (await model.chat(_request())).usage.completion_tokens
        server.latency = LatencyModel(100, 2400 / tokens)
        started = time.perf_counter()
        first, second = await asyncio.gather(model.chat(_request()), model.chat(_request(seed=1)))
        elapsed = time.perf_counter() - started
        await endpoint.close()
    finally:
        await server.close()
    assert first.text and second.text and elapsed > 4.0
    assert max(e["queue_ms"] for e in _log(tmp_path)) > 2000  # it did wait at the server


async def test_a_server_that_refuses_n_gets_the_samples_as_separate_requests():
    asked: list[dict] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body)
        if body.get("n", 1) > 1:  # as llama.cpp's own server answers
            error = {"error": {"code": 400, "message": "Only one completion choice is allowed"}}
            return web.json_response(error, status=400)
        return await _OneChoice().handle_body(body)

    async with _fake_server([("post", "/v1/chat/completions", chat)]) as url:
        endpoint = Endpoint(url, capacity=2)
        result = await EndpointModel(endpoint, "m").chat(_request(n=3, seed=0, temperature=0.7))
        await endpoint.close()
    assert [c.text for c in result.completions] == ["#### 0", "#### 1", "#### 2"]
    assert [b.get("n") for b in asked] == [3, None, None, None]
    assert any("refused n=3" in note for note in endpoint.notes)


async def test_an_eval_report_says_what_the_server_left_out(tmp_path):
    from hyperteam.evals.datasets import Problem
    from hyperteam.evals.report import render_terminal
    from hyperteam.evals.runner import evaluate
    from hyperteam.topologies import load_team

    fake = _OneChoice()
    async with _fake_server([("post", "/v1/chat/completions", fake.handle)]) as url:
        report = await evaluate(
            load_team("self-consistency"),
            [Problem(id="p0", question=QUESTION, answer="42")],
            model=f"{url}#m",
            store=tmp_path / "run.sqlite",
        )
    assert report["calls"] == 5  # one request for n=5, four more for the samples it left out
    [endpoint] = report["endpoints"]
    assert endpoint["url"] == url
    assert any("of n=5 choices" in note for note in endpoint["notes"])
    assert f"note: {url}: returned 1 of n=5 choices" in render_terminal(report)


async def test_a_training_report_says_what_the_server_left_out(tmp_path):
    import hyperteam as ht
    from hyperteam.evals.datasets import Problem
    from hyperteam.optim.report import write_report
    from hyperteam.testing import FunctionModel

    fake = _OneChoice()
    problems = [Problem(id=f"p{i}", question=QUESTION, answer="42") for i in range(3)]
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", samples=3, temperature=0.7)])], name="sc")
    async with _fake_server([("post", "/v1/chat/completions", fake.handle)]) as url:
        trainer = ht.optim.Trainer(
            team, train=problems[:2], val=problems[2:], model=f"{url}#m", optimizer_model=FunctionModel(lambda r: "ok"),
            epochs=1, batch=2,
        )  # fmt: skip
        report = await trainer.fit()
    [endpoint] = report["endpoints"]
    assert endpoint["url"] == url and any("returned 1 of n=3 choices" in note for note in endpoint["notes"])
    _, html_path = write_report(report, tmp_path)
    assert f"{url}: returned 1 of n=3 choices" in html_path.read_text()
