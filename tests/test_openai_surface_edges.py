"""The OpenAI-compatible surface besides streaming: model cards, and the cost of each step of a run."""

from __future__ import annotations

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
