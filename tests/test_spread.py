"""Spreading one model's requests over replicas: load, prefix affinity, failover, and an eval that loses a replica."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from hyperteam.errors import ConfigError, ModelError
from hyperteam.models import ChatRequest, ChatResult, Completion, Runtime, Usage
from hyperteam.models.spread import SpreadModel

STANDIN = f"{sys.executable} -m hyperteam.testing.vllm_standin"


class _Replica:
    """A replica whose calls wait for a gate, and that fails while ``down`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        self.calls += 1
        await self.gate.wait()
        if self.down:
            raise ModelError(f"cannot reach {self.name}", kind="connection")
        return ChatResult([Completion(f"from {self.name}")], Usage(1, 1, 1), model=self.name)


def _request(problem: str, agent: str = "a") -> ChatRequest:
    return ChatRequest([{"role": "system", "content": "Solve."}, {"role": "user", "content": problem + "\n" + agent}])


async def test_the_same_prefix_stays_on_one_replica_and_load_goes_to_the_least_busy():
    replicas = [_Replica(f"r{i}") for i in range(3)]
    model = SpreadModel(replicas, affinity_slack=2, prefix_chars=40)
    problem = "Janet's ducks lay 16 eggs per day and she eats three."  # longer than the prefix
    answers = {(await model.chat(_request(problem, agent))).model for agent in ("a", "b", "c", "d")}
    assert len(answers) == 1  # every agent of the problem on one replica: its prefix is cached there
    home = next(r for r in replicas if r.name in answers)
    home.gate.clear()  # the home replica gets busy
    stuck = [asyncio.create_task(model.chat(_request(problem, str(i)))) for i in range(3)]
    await asyncio.sleep(0)
    assert home.calls == 4 + 3  # within the slack: still the home replica
    moved = await model.chat(_request(problem, "late"))
    assert moved.model != home.name  # 3 more outstanding than the others: the least busy one
    home.gate.set()
    await asyncio.gather(*stuck)


async def test_a_failed_replica_is_taken_out_and_retried_after_its_cooldown():
    replicas = [_Replica("r0"), _Replica("r1")]
    model = SpreadModel(replicas, cooldown_s=0.2)
    key = model.affinity_key(_request("q"))
    home = model.pick(key)
    home.model.down = True
    result = await model.chat(_request("q"))
    assert result.model != home.model.name  # retried on the other replica, the caller saw no error
    assert [s["down"] for s in model.stats()] == [r is home.model for r in replicas]
    home.model.down = False
    assert (await model.chat(_request("q"))).model != home.model.name  # still cooling down
    await asyncio.sleep(0.25)
    assert (await model.chat(_request("q"))).model == home.model.name  # back after the cool-down
    assert not any(s["down"] for s in model.stats())


async def test_refused_requests_are_not_retried_elsewhere_and_all_down_raises():
    class _Refusing(_Replica):
        async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
            self.calls += 1
            raise ModelError("bad request", kind="http_400", status=400)

    refusing = [_Refusing("r0"), _Refusing("r1")]
    with pytest.raises(ModelError, match="bad request"):
        await SpreadModel(refusing).chat(_request("q"))
    assert sum(r.calls for r in refusing) == 1
    down = [_Replica("r0"), _Replica("r1")]
    for r in down:
        r.down = True
    with pytest.raises(ModelError, match="cannot reach"):
        await SpreadModel(down).chat(_request("q"))
    assert [r.calls for r in down] == [1, 1]


def test_several_urls_make_a_spread_model():
    model = Runtime().model("http://127.0.0.1:9001/v1,http://127.0.0.1:9002/v1#Org/M")
    assert isinstance(model, SpreadModel)
    assert [r.model.name for r in model.replicas] == [
        "http://127.0.0.1:9001/v1#Org/M",
        "http://127.0.0.1:9002/v1#Org/M",
    ]
    with pytest.raises(ConfigError, match="malformed replica URL 'ftp://x'"):
        Runtime().model("http://127.0.0.1:9001/v1,ftp://x#Org/M")


async def test_eval_over_three_replicas_survives_one_stopped_mid_run(data_dir, monkeypatch: pytest.MonkeyPatch):
    from hyperteam.backends.vllm import ServerGroup, VLLMOptions
    from hyperteam.evals import datasets
    from hyperteam.evals.runner import evaluate
    from hyperteam.topologies import load_team

    options = VLLMOptions(vllm_bin=STANDIN, replicas=3, api_key="k", extra_args=("--latency-ms", "60"))
    group = ServerGroup("Org/M", options)
    problems = datasets.load("gsm8k", limit=60)
    monkeypatch.setenv("HYPERTEAM_API_KEY", "k")
    await asyncio.to_thread(lambda: group.start().wait_ready(30))
    victim = group.servers[1]
    stopper: list[threading.Thread] = []

    def progress(p):  # stop one replica once the run is well under way
        if p.done >= 12 and not stopper:
            stopper.append(threading.Thread(target=victim.stop))
            stopper[0].start()

    try:
        async with Runtime(max_concurrency=16) as rt:
            spec = group.spec
            model = rt.model(spec)  # the model the eval below uses too
            report = await evaluate(
                load_team("ann-gsm8k"),
                problems,
                concurrency=8,
                runtime=rt,
                model=spec,
                suite="gsm8k",
                progress=progress,
            )
            stats = model.stats()
    finally:
        for t in stopper:
            t.join()
        await asyncio.to_thread(group.stop)
    assert stopper and not victim.running()
    assert report["n"] == 60 and report["errors"] == 0  # every problem answered, none lost
    assert stats[1]["failures"] >= 1 and stats[1]["down"]
    assert stats[0]["served"] > 0 and stats[2]["served"] > 0 and stats[1]["served"] > 0
