"""The OpenAI-compatible surface besides streaming: model cards, and the cost of each step of a run."""

from __future__ import annotations

import asyncio
import time

import pytest

from hyperteam.errors import ConfigError, ModelError
from hyperteam.testing import FunctionModel
from tests.test_serve_support import chain_team, client_for, make_app


async def test_model_cards_have_the_openai_fields():
    team = chain_team(FunctionModel(lambda request: "#### 4"), name="one", layers=1)
    app = make_app({"one": team})
    async with client_for(app) as client:
        listed = (await client.get("/v1/models")).json()
        card = (await client.get("/v1/models/one")).json()
    assert listed["object"] == "list" and listed["data"] == [card]
    assert set(card) == {"id", "object", "created", "owned_by", "description"}
    assert (card["id"], card["object"], card["owned_by"]) == ("one", "model", "hyperteam")
    assert isinstance(card["created"], int) and card["created"] > 1_600_000_000
    assert card["description"] == team.description


async def test_each_step_of_a_completion_says_what_it_cost():
    app = make_app({"one": chain_team(FunctionModel(lambda request: "adding\n#### 4"), name="one", layers=2)})
    async with client_for(app) as client:
        body = {"model": "one", "messages": [{"role": "user", "content": "2 + 2?"}]}
        completion = (await client.post("/v1/chat/completions", json=body)).json()
        run = completion["hyperteam"]["runs"][0]
        stored = (await client.get(f"/v1/runs/{run['run_id']}")).json()
    steps = [s for s in run["trace"] if s["kind"] == "agent"]
    assert [(s["layer"], s["agent"]) for s in steps] == [("step0", "a0"), ("step1", "a1")]
    assert all(s["answer"] == "4" for s in steps)
    agents = [e for e in stored["trace"] if e["kind"] == "agent"]
    assert [s["tokens"] for s in steps] == [e["usage"]["total_tokens"] for e in agents]
    assert all(s["tokens"] > 0 and s["calls"] == 1 and s["error"] is None for s in steps)
    assert sum(s["tokens"] for s in run["trace"]) == run["usage"]["total_tokens"]


async def test_a_completion_has_the_openai_shape():
    before = int(time.time())
    app = make_app({"one": chain_team(FunctionModel(lambda request: "adding\n#### 4"), name="one", layers=1)})
    async with client_for(app) as client:
        body = {"model": "one", "messages": [{"role": "user", "content": "2 + 2?"}]}
        completion = (await client.post("/v1/chat/completions", json=body)).json()
    assert set(completion) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
        "hyperteam",
    }
    assert completion["object"] == "chat.completion" and completion["model"] == "one"
    assert completion["system_fingerprint"] is None and before <= completion["created"] <= time.time()
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "adding\n#### 4", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    wall_s = completion["hyperteam"]["runs"][0]["wall_s"]
    assert isinstance(wall_s, float) and 0 < wall_s < 5


@pytest.mark.parametrize(
    ("stop", "content"),
    [
        (["XY"], ""),  # a stop sequence at the very start leaves nothing
        ([" again"], "XY then XY"),
        (["then", "XY again"], "XY "),  # the earliest of several
        (["nowhere"], "XY then XY again"),
    ],
)
async def test_the_answer_is_cut_before_the_first_stop_sequence(stop: list[str], content: str):
    app = make_app({"one": chain_team(FunctionModel(lambda request: "XY then XY again"), name="one", layers=1)})
    async with client_for(app) as client:
        body = {"model": "one", "messages": [{"role": "user", "content": "go"}], "stop": stop}
        completion = (await client.post("/v1/chat/completions", json=body)).json()
    assert completion["choices"][0]["message"]["content"] == content


@pytest.mark.parametrize(
    ("error", "status", "code", "says"),
    [
        (ModelError("upstream down", kind="http_503", status=503), 502, "http_503", "upstream down"),
        (ConfigError("bad tool"), 500, "ConfigError", "bad tool"),
        (ValueError("a bug"), 500, "internal", ""),
    ],
)
async def test_a_failed_run_is_a_502_when_the_endpoint_failed_and_a_500_when_we_did(
    error: Exception, status: int, code: str, says: str
):
    def reply(request: object) -> str:
        raise error

    app = make_app({"one": chain_team(FunctionModel(reply), name="one", layers=1)})
    async with client_for(app) as client:
        body = {"model": "one", "messages": [{"role": "user", "content": "go"}]}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    failure = response.json()["error"]
    assert failure["code"] == code and failure["message"].startswith("the team's run failed: ")
    assert says in failure["message"]


async def test_a_run_has_the_documented_fields_and_an_unknown_run_is_a_plain_404():
    app = make_app({"one": chain_team(FunctionModel(lambda request: "#### 4"), name="one", layers=1)})
    async with client_for(app) as client:
        created = (await client.post("/v1/runs", json={"team": "one", "input": "2 + 2?"})).json()
        await wait_for_status(client, created["id"])
        run = (await client.get(f"/v1/runs/{created['id']}")).json()
        missing = await client.get("/v1/runs/run_doesnotexist")
        spec = (await client.get("/openapi.json")).json()
    assert set(run) == {"id", "object", "team", "status", "input", "result", "usage", "error", "created_at",
                        "updated_at", "trace"}  # fmt: skip
    assert (run["object"], run["team"], run["status"]) == ("run", "one", "succeeded")
    assert isinstance(run["created_at"], float | int) and run["created_at"] <= run["updated_at"]
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "no such run",
        "type": "invalid_request_error",
        "param": "run_id",
        "code": "run_not_found",
    }
    assert spec["paths"]["/v1/runs/{run_id}"]["get"]["tags"] == ["runs"]


async def wait_for_status(client: object, run_id: str) -> None:
    for _ in range(200):
        run = (await client.get(f"/v1/runs/{run_id}")).json()  # type: ignore[attr-defined]
        if run["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the run did not finish")
