"""What an eval run and a training run do with what they are given (issue 18's surviving mutants):
the store closed, the endpoint's limit and stats, the query learned from, the runtime used, the examples
the evaluator sees, and the validation change the checkpoint keeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

import hyperteam as ht
from hyperteam.errors import ConfigError, ModelError
from hyperteam.evals.datasets import Problem
from hyperteam.evals.runner import evaluate
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatRequest
from hyperteam.testing import FunctionModel
from tests.aiohttp_loopback import aiohttp_server
from tests.test_eval_edges import PROBLEMS, _adaptive_team, _good_and_bad
from tests.test_optim import kind_of

# -- evaluate ----------------------------------------------------------------------------------------


def _five() -> FunctionModel:
    return FunctionModel(lambda request: "#### 5")


def test_evaluate_closes_the_store_it_opened_even_when_it_refuses_the_run(tmp_path: Path) -> None:
    # SQLite removes a WAL store's -wal and -shm files when its last connection closes.
    store = tmp_path / "r.sqlite"
    asyncio.run(evaluate(ht.load_team("single"), [Problem("p1", "five?", "5")], model=_five(), store=store))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]
    other = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a")])], name="other")
    with pytest.raises(ConfigError, match="holds a run of team 'single'") as refused:
        asyncio.run(evaluate(other, [Problem("p1", "five?", "5")], model=_five(), store=store, resume=True))
    assert refused.value is not None  # the traceback is still held here, and the store is closed all the same
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]


@asynccontextmanager
async def _counting_server(peak: list[int]) -> AsyncIterator[str]:
    """A chat endpoint on loopback that answers ``#### 5`` after 50 ms; ``peak[0]`` is the most in flight at once."""
    in_flight = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal in_flight
        await request.json()
        in_flight += 1
        peak[0] = max(peak[0], in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        message = {"role": "assistant", "content": "#### 5"}
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        })  # fmt: skip

    async with aiohttp_server([("post", "/v1/chat/completions", handle)]) as url:
        yield url


async def test_concurrency_one_sends_one_request_at_a_time_and_the_report_names_the_endpoint() -> None:
    # Four agents of one layer call at once; with concurrency=1 and no runtime given, one request is in flight.
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name=f"a{i}") for i in range(4)])], name="four")
    peak = [0]
    async with _counting_server(peak) as url:
        problems = [Problem(f"p{i}", "five?", "5") for i in range(2)]
        report = await evaluate(team, problems, model=f"{url}#m", concurrency=1)
    assert report["accuracy"]["strict"] == 1.0 and report["calls"] == 8
    assert peak[0] == 1
    [endpoint] = report["endpoints"]
    assert endpoint["url"] == url and endpoint["limit"] == 1 and endpoint["peak_in_flight"] == 1


def test_adapt_learns_from_the_query_so_its_weights_not_its_prior_move() -> None:
    # With the query (the default features=64) the adaptive fusion learns query weights and selection
    # rates and keeps its prior; an update without the query would move the prior instead.
    team = _adaptive_team()
    asyncio.run(evaluate(team, PROBLEMS, model=_good_and_bad(), concurrency=1, adapt=True))
    spec = team.layers[0].fusion
    assert "scores" not in spec
    assert sorted(spec["weights"]) == ["bad1", "bad2", "good"] and sorted(spec["selected"]) == ["bad1", "bad2", "good"]
    assert spec["weights"]["good"][0] > 0 > spec["weights"]["bad1"][0]


def test_a_resumed_adaptive_run_ends_with_what_an_uninterrupted_run_learned(tmp_path: Path) -> None:
    whole = _adaptive_team()
    asyncio.run(evaluate(whole, PROBLEMS, model=_good_and_bad(), concurrency=1, adapt=True))
    store = tmp_path / "r.sqlite"
    asyncio.run(evaluate(_adaptive_team(), PROBLEMS[:2], model=_good_and_bad(), store=store, concurrency=1, adapt=True))
    resumed = _adaptive_team()  # a fresh team: it replays p0 and p1 from the store, then runs p2
    asyncio.run(evaluate(resumed, PROBLEMS, model=_good_and_bad(), store=store, concurrency=1, adapt=True, resume=True))
    assert resumed.layers[0].fusion == whole.layers[0].fusion


# -- the trainer ---------------------------------------------------------------------------------------

GOLD = {f"Problem {i}: how many?": str(10 + i) for i in range(3)}
VAL = [Problem(f"v{i}", q, g) for i, (q, g) in enumerate(GOLD.items())]
TRAIN = [Problem(f"t{i}", f"Training problem {i}: how many?", "1") for i in range(2)]


def _optimizer(seen: list[str] | None = None) -> FunctionModel:
    def reply(request: ChatRequest) -> str:
        kind = kind_of(request)
        if seen is not None:
            seen.append(request.messages[-1]["content"])
        if kind == "update":
            return json.dumps({"ops": [{"op": "set_instructions", "agent": "s", "value": "Be NEW."}]})
        return "<feedback>wrong</feedback>" if kind == "evaluate" else "<gradient>be better</gradient>"

    return FunctionModel(reply)


def _solver(request: ChatRequest) -> str:
    """Right on every validation problem once patched ("Be NEW."), before only on the first; train: wrong.

    So any validation minibatch of two improves, and the full set goes from 1/3 to 1.
    """
    prompt = request.messages[-1]["content"]
    question = next((q for q in GOLD if q in prompt), None)
    if question is None:
        return "#### 0"
    right = "Be NEW." in prompt or GOLD[question] == "10"
    return f"#### {GOLD[question] if right else 0}"


def _one_agent_team() -> ht.LayeredTeam:
    return ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", instructions="Solve.")])], name="one")


def test_the_trainer_runs_minibatch_and_validation_on_the_runtime_it_was_given(tmp_path: Path) -> None:
    # "house-model" is known only to this runtime: a run on any other runtime fails to resolve it.
    async def go() -> dict:
        rt = Runtime()
        rt._models["house-model"] = FunctionModel(_solver)
        trainer = ht.optim.Trainer(
            _one_agent_team(), train=TRAIN, val=VAL, model="house-model", optimizer_model=_optimizer(),
            epochs=1, batch=len(TRAIN), val_batch=2, runtime=rt, checkpoint=tmp_path / "ckpt.json",
        )  # fmt: skip
        try:
            return await trainer.fit()
        finally:
            await rt.aclose()

    report = asyncio.run(go())
    [step] = report["steps"]
    assert step["failed"]["failed"] == 0 and step["outcome"] == "accepted"
    assert step["val_minibatch"]["after"] == 2 and step["val_candidate"] == 1.0  # both validation runs answered


def test_the_validation_change_is_kept_to_four_places(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.json"
    trainer = ht.optim.Trainer(
        _one_agent_team(), train=TRAIN, val=VAL, model=FunctionModel(_solver), optimizer_model=_optimizer(),
        epochs=1, batch=len(TRAIN), val_batch=2, checkpoint=ckpt,
    )  # fmt: skip
    report = trainer.fit_sync()
    assert report["curve"][0]["val"] == pytest.approx(1 / 3) and report["steps"][0]["outcome"] == "accepted"
    [moment] = trainer.optimizer.history["solve"]
    assert moment.val_change == 0.6667  # 1.0 - 1/3
    saved = json.loads(ckpt.read_text())
    assert saved["optimizer"]["history"]["solve"][0]["val_change"] == 0.6667


def test_a_problem_whose_every_agent_call_failed_is_not_shown_to_the_evaluator() -> None:
    # A chain does not raise when its every call fails: the run has a result, and a failure kind.
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", instructions="Solve.")], fusion="chain")])

    def solver(request: ChatRequest) -> str:
        if "Training problem 0" in request.messages[-1]["content"]:
            raise ModelError("upstream down", kind="http_500")
        return _solver(request)

    seen: list[str] = []
    trainer = ht.optim.Trainer(
        team, train=TRAIN, val=VAL, model=FunctionModel(solver), optimizer_model=_optimizer(seen),
        epochs=1, batch=len(TRAIN), val_batch=2,
    )  # fmt: skip
    report = trainer.fit_sync()
    [step] = report["steps"]
    assert step["failed"]["failed"] == 1 and step["failed"]["failed_by_kind"] == {"http_500": 1}
    assert any("Training problem 1" in prompt for prompt in seen)
    assert not any("Training problem 0" in prompt for prompt in seen)
