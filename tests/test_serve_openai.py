"""Served teams through the official OpenAI SDK, unchanged: models, answers, streaming, parameters."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import DATA_DIR, needs_data
from tests.test_serve_support import KEY, SlowModel, chain_team, client_for, make_app, wide_team

try:  # openai >= 3 speaks httpx2; older releases httpx
    import httpx2 as sdk_httpx
except ImportError:  # pragma: no cover
    import httpx as sdk_httpx


def _question() -> tuple[str, str]:
    if DATA_DIR is None:
        return "What is 2 + 3?", ""
    with open(DATA_DIR / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        row = json.loads(f.readline())
    return row["question"], row["answer"].split("####")[-1].strip()


QUESTION, GOLD = _question()


def sdk(app, key: str = KEY) -> openai.AsyncOpenAI:
    http = sdk_httpx.AsyncClient(transport=sdk_httpx.ASGITransport(app), base_url="http://testserver")
    return openai.AsyncOpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


async def test_sdk_lists_the_served_teams_as_models():
    app = make_app()
    async with client_for(app):
        models = await sdk(app).models.list()
        assert sorted(m.id for m in models.data) == ["ann-gsm8k", "single"]
        assert (await sdk(app).models.retrieve("single")).id == "single"


@needs_data
async def test_sdk_gets_the_teams_answer_with_summed_usage(data_dir):
    app = make_app()
    async with client_for(app) as client:
        completion = await sdk(app).chat.completions.create(
            model="ann-gsm8k", messages=[{"role": "user", "content": QUESTION}], n=2
        )
        assert completion.object == "chat.completion" and completion.model == "ann-gsm8k"
        assert completion.choices[0].message.content.rstrip().endswith(f"#### {GOLD}")
        extra = completion.model_extra["hyperteam"]
        assert extra["answer"] == GOLD and extra["simulated"] is True
        run = extra["runs"][0]
        assert run["usage"]["calls"] == 4  # three solvers and a verifier
        assert [s["agent"] for s in run["trace"] if s["kind"] == "agent"] == [
            "tutor",
            "algebraist",
            "accountant",
            "verifier",
        ]
        assert len(completion.choices) == len(extra["runs"]) == 2 and run["usage"]["total_tokens"] > 100
        for field in ("prompt_tokens", "completion_tokens", "total_tokens"):  # both runs are paid for
            assert getattr(completion.usage, field) == sum(r["usage"][field] for r in extra["runs"])
        # The chat completion is a persisted run too.
        stored = (await client.get(f"/v1/runs/{extra['run_id']}")).json()
        assert stored["status"] == "succeeded" and stored["result"]["answer"] == GOLD
        assert len([e for e in stored["trace"] if e["kind"] == "agent"]) == 4


async def test_sdk_streams_role_events_text_finish_usage_and_done():
    model = SlowModel(text="First I add.\nThen I check the sum carefully once more.\n#### 4")
    app = make_app({"wide": wide_team(model)})
    async with client_for(app):
        stream = await sdk(app).chat.completions.create(
            model="wide",
            messages=[{"role": "user", "content": "What is 2 + 2?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    events = [c.model_extra["hyperteam_event"] for c in chunks if c.model_extra.get("hyperteam_event")]
    assert [e["agent"] for e in events if e.get("kind") == "agent"] == ["s0", "s1", "s2"]
    assert events[-1] == {**events[-1], "type": "status", "status": "succeeded"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "First I add.\nThen I check the sum carefully once more.\n#### 4"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len(model.requests) == 3


async def test_stream_ends_with_done_over_raw_sse():
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        body = {"model": "wide", "messages": [{"role": "user", "content": "2 + 2?"}], "stream": True}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all("usage" not in c for c in chunks)  # without include_usage, no usage key at all
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


async def test_n_runs_the_team_n_times_and_overrides_reach_every_agent():
    model = SlowModel()
    app = make_app({"wide": wide_team(model, agents=2)})
    async with client_for(app):
        completion = await sdk(app).chat.completions.create(
            model="wide",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}],
            n=3,
            temperature=0.25,
            max_tokens=90,
            max_completion_tokens=77,
            seed=5,
            stop=["#### "],
        )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.message.content == "Adding up.\n" for c in completion.choices)  # cut at the stop sequence
    assert len({r["run_id"] for r in completion.model_extra["hyperteam"]["runs"]}) == 3
    assert len(model.requests) == 6
    assert {(r.temperature, r.max_tokens, r.seed) for r in model.requests} == {(0.25, 77, 5)}
    prompt = model.requests[0].messages[-1]["content"]
    assert "Conversation so far:\n[system] Be brief." in prompt and "Current message:\n2 + 2?" in prompt


async def test_overrides_do_not_change_the_served_team():
    model = SlowModel()
    team = wide_team(model, agents=1)
    app = make_app({"wide": team})
    async with client_for(app):
        await sdk(app).chat.completions.create(
            model="wide", messages=[{"role": "user", "content": "1?"}], temperature=1.5
        )
        await sdk(app).chat.completions.create(model="wide", messages=[{"role": "user", "content": "1?"}])
    assert [r.temperature for r in model.requests] == [1.5, None]
    assert team.agents[0].temperature is None


async def test_unknown_team_is_model_not_found():
    app = make_app()
    async with client_for(app):
        with pytest.raises(openai.NotFoundError) as info:
            await sdk(app).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"top_p": 0.5}, "top_p"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"stream": True, "stream_options": {"chunk_size": 3}}, "stream_options.chunk_size"),
    ],
)
async def test_parameters_a_team_cannot_honour_are_refused_by_name(params, param):
    model = SlowModel()
    app = make_app({"wide": wide_team(model)})
    async with client_for(app) as client:
        body = {"model": "wide", "messages": [{"role": "user", "content": "hi"}], **params}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert model.requests == []


@pytest.mark.parametrize(
    ("params", "param"),
    [({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": ""}, "stop"), ({"temperature": 3}, "temperature")],
)
async def test_out_of_range_values_are_422(params, param):
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        body = {"model": "wide", "messages": [{"role": "user", "content": "hi"}], **params}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"].startswith(param)


async def test_no_op_values_of_unsupported_parameters_are_accepted():
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        body = {
            "model": "wide",
            "messages": [{"role": "user", "content": "hi"}],
            "top_p": 1,
            "logprobs": False,
            "presence_penalty": 0,
            "user": None,
        }
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "assistant", "content": "Sure"}, {"role": "user", "content": " "}], "messages"),
        ([{"role": "tool", "content": "42", "tool_call_id": "x"}], "messages[0]"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
            "messages[0].content",
        ),
        ([{"role": "user", "content": "   "}], "messages"),
    ],
)
async def test_conversations_without_a_text_task_are_refused(messages, param):
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json={"model": "wide", "messages": messages})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_a_conversation_ending_with_an_assistant_turn_is_answered_with_it_as_context():
    # OpenAI's API answers the next turn of any conversation; a JSON schema cannot say "the last
    # message is the user's", so the service takes the last user message with text as the task.
    model = SlowModel()
    app = make_app({"one": chain_team(model, name="one", layers=1)})
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "Let me think."},
    ]
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json={"model": "one", "messages": messages})
    assert response.status_code == 200, response.text
    prompt = model.requests[0].messages[-1]["content"]
    assert "[assistant] Let me think." in prompt and "Current message:\nWhat is 2 + 2?" in prompt


async def test_text_parts_are_joined_into_the_task():
    model = SlowModel()
    app = make_app({"one": chain_team(model, name="one", layers=1)})
    async with client_for(app) as client:
        content = [{"type": "text", "text": "Tom has 3 apples."}, {"type": "text", "text": "How many?"}]
        response = await client.post(
            "/v1/chat/completions", json={"model": "one", "messages": [{"role": "user", "content": content}]}
        )
    assert response.status_code == 200
    assert "Tom has 3 apples.\nHow many?" in model.requests[0].messages[-1]["content"]


async def test_a_failing_team_is_a_502_with_the_reason():
    from hyperteam.errors import ModelError
    from hyperteam.testing import ScriptedModel

    model = ScriptedModel([ModelError("upstream down", kind="http_503", status=503)])
    app = make_app({"one": chain_team(model, name="one", layers=1)})
    async with client_for(app) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "one", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "http_503"
    assert "every agent failed" in response.json()["error"]["message"]


async def test_a_failing_team_ends_a_stream_with_an_error_the_sdk_raises():
    from hyperteam.errors import ModelError
    from hyperteam.testing import ScriptedModel

    model = ScriptedModel([ModelError("upstream down", kind="http_503", status=503)])
    app = make_app({"one": chain_team(model, name="one", layers=1)})
    async with client_for(app):
        stream = await sdk(app).chat.completions.create(
            model="one", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="every agent failed"):
            async for _ in stream:
                pass


async def test_runs_work_with_opentelemetry_configured(monkeypatch):
    pytest.importorskip("opentelemetry.trace")
    from hyperteam.serve.metrics import _tracer

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert _tracer() is not None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert _tracer() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    app = make_app({"wide": wide_team(SlowModel())})
    async with client_for(app):
        completion = await sdk(app).chat.completions.create(model="wide", messages=[{"role": "user", "content": "1?"}])
    assert completion.model_extra["hyperteam"]["answer"] == "4"


async def test_a_chat_run_cancelled_through_the_runs_api_is_a_409():
    import asyncio

    from tests.test_serve_support import wait_for

    model = SlowModel(delay=0.05)
    app = make_app({"chain3": chain_team(model)})
    manager = app.state.service.manager
    async with client_for(app) as client:
        body = {"model": "chain3", "messages": [{"role": "user", "content": "1?"}]}
        pending = asyncio.create_task(client.post("/v1/chat/completions", json=body))
        await wait_for(lambda: bool(manager.active_ids) and len(model.requests) >= 1)
        cancelled = await client.post(f"/v1/runs/{manager.active_ids[0]}/cancel")
        assert cancelled.status_code == 200
        response = await pending
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_cancelled"
    assert len(model.requests) < 3
