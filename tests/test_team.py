"""Layered teams on test doubles: answers, votes, usage, traces, failures, prompt layout."""

from __future__ import annotations

import asyncio

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.models.types import Completion
from hyperteam.testing import FunctionModel, ScriptedModel, ScriptError


def _solvers(n: int = 3) -> list[ht.Agent]:
    base = ht.Agent(name="s0", role="careful math tutor", instructions="Solve. End with '#### <number>'.")
    return [base.clone(name=f"s{i}") for i in range(n)]


def _by_agent(answers: dict[str, str]) -> FunctionModel:
    """A model whose reply depends on which agent asks (the agent's name ends the prompt)."""

    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        for name, text in answers.items():
            if f"You are {name}," in user or f"You are {name}." in user:
                return text
        raise AssertionError(f"no reply scripted for prompt {user[-80:]!r}")

    return FunctionModel(reply)


async def test_majority_vote_picks_the_most_common_normalised_answer():
    model = _by_agent({"s0": "so $1,000.00\n#### $1,000.00", "s1": "#### 999", "s2": "The answer is 1000."})
    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers(), fusion="majority_vote")], model=model)
    result = await team.run("How much?")
    assert result.answer == "1000"
    assert "$1,000.00" in result.text  # the first winning solution is passed on, not a bare number
    fusion = result.trace[-1]
    assert fusion.kind == "fusion" and fusion.detail["votes"] == {"1000": 2, "999": 1}
    assert "2 of 3" in fusion.detail["reason"]


async def test_ties_are_broken_by_agent_order_not_timing():
    async def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        if "You are s0" in user:
            await asyncio.sleep(0.05)  # the first agent finishes last
            return "#### 7"
        return "#### 8" if "You are s1" in user else "no number here"

    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers())], model=FunctionModel(reply))
    result = await team.run("q")
    assert result.answer == "7"
    assert "tie" in result.trace[-1].detail["reason"]


async def test_usage_is_summed_per_agent_layer_and_run():
    model = FunctionModel(lambda r: "one two three\n#### 3")
    team = ht.load_team("ann-gsm8k")
    result = await team.run("What is 1 + 2?", model=model)
    assert result.answer == "3"
    assert result.usage.calls == 4 == len(model.requests)
    by_layer = result.usage_by_layer
    assert by_layer["solve"].calls == 3 and by_layer["verify"].calls == 1
    assert sum(u.total_tokens for u in result.usage_by_agent.values()) == result.usage.total_tokens
    assert result.usage.completion_tokens == 4 * by_layer["verify"].completion_tokens
    assert [ev.agent for ev in result.trace if ev.kind == "agent"] == ["tutor", "algebraist", "accountant", "verifier"]


async def test_next_layer_reads_the_fused_output():
    model = _by_agent({"s0": "sum is 5\n#### 5", "s1": "#### 5", "s2": "#### 6", "checker": "checked\n#### 5"})
    checker = ht.Agent(name="checker", role="verifier")
    team = ht.LayeredTeam(
        [ht.Layer("solve", agents=_solvers()), ht.Layer("check", agents=[checker], input_title="Proposed")],
        model=model,
    )
    result = await team.run("2 + 3?")
    check_prompt = model.requests[-1].messages[-1]["content"]
    assert "Proposed:\nsum is 5\n#### 5" in check_prompt
    assert result.answer == "5" and result.text == "checked\n#### 5"


async def test_agents_of_a_layer_share_a_byte_identical_prefix():
    model = FunctionModel(lambda r: "#### 1")
    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers())], model=model)
    await team.run("A long shared question about ducks and eggs?")
    prompts = [r.messages for r in model.requests]
    assert all(p[0] == prompts[0][0] for p in prompts)  # the same system message
    users = [p[1]["content"] for p in prompts]
    head = users[0].split("You are")[0]
    assert len(head) > 40 and all(u.startswith(head) for u in users)


async def test_a_failed_agent_is_recorded_and_the_others_still_vote():
    def reply(request: ht.ChatRequest) -> str:
        if "You are s1" in request.messages[-1]["content"]:
            raise ModelError("call failed at http://x/v1 after 4 attempts: http_500: boom", kind="http_500")
        return "#### 4"

    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers())], model=FunctionModel(reply))
    result = await team.run("2 + 2?")
    assert result.answer == "4"
    failed = [ev for ev in result.trace if ev.error]
    assert [ev.agent for ev in failed] == ["s1"] and failed[0].error.startswith("http_500")
    assert result.usage.calls == 2


async def test_a_layer_where_every_agent_failed_ends_the_run_with_a_model_error():
    model = ScriptedModel([ModelError("cannot reach http://x/v1: connection: refused", kind="connection")] * 3)
    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers())], model=model)
    with pytest.raises(ModelError, match="every agent failed: connection") as info:
        await team.run("q")
    assert info.value.kind == "connection"


async def test_llm_synthesize_shows_the_aggregator_every_candidate():
    seen = []

    def reply(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        if "You are the aggregator" in user:
            seen.append(user)
            return "combined\n#### 12"
        return "#### 11" if "You are s0" in user else "#### 12"

    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers(), fusion="llm_synthesize")], model=FunctionModel(reply))
    result = await team.run("q?")
    assert result.answer == "12" and result.usage.calls == 4
    assert len(seen) == 1 and "#### 11" in seen[0] and seen[0].count("#### 12") == 2
    assert result.trace[-1].detail["strategy"] == "llm_synthesize"


async def test_scripted_model_fails_on_unexpected_and_leftover_calls():
    model = ScriptedModel(["#### 1"])
    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers(2))], model=model)
    with pytest.raises(ScriptError, match="unexpected call #2"):
        await team.run("q")
    leftover = ScriptedModel(["#### 1", "#### 2"])
    with pytest.raises(ScriptError, match="1 scripted response"), leftover:
        await ht.LayeredTeam([ht.Layer("one", agents=_solvers(1))], model=leftover).run("q")


def test_run_sync_outside_and_inside_a_loop():
    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers(1))], model=FunctionModel(lambda r: "#### 9"))
    assert team.run_sync("q").answer == "9"

    async def inside() -> None:
        team.run_sync("q")

    with pytest.raises(ht.ConfigError, match=r"await team\.run"):
        asyncio.run(inside())


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match="duplicate agent names"):
        ht.Layer("solve", agents=[ht.Agent(name="a"), ht.Agent(name="a")])
    with pytest.raises(ValueError, match="unknown fusion 'nope'"):
        ht.Layer("solve", agents=[ht.Agent(name="a")], fusion="nope")
    with pytest.raises(ValueError, match="agent names are letters"):
        ht.Agent(name="bad name")
    with pytest.raises(ValueError, match="duplicate layer names"):
        layer = ht.Layer("x", agents=[ht.Agent(name="a")])
        ht.LayeredTeam([layer, ht.Layer("x", agents=[ht.Agent(name="b")])])


async def test_steps_are_reported_as_they_finish():
    seen: list[tuple[str, str]] = []

    async def reply(request: ht.ChatRequest) -> str:
        if "You are s0" in request.messages[-1]["content"]:
            await asyncio.sleep(0.05)  # finishes last of its layer
        return "#### 2"

    team = ht.LayeredTeam([ht.Layer("solve", agents=_solvers())], model=FunctionModel(reply))
    result = await team.run("1 + 1?", on_event=lambda ev: seen.append((ev.kind, ev.agent)))
    assert seen == [("agent", "s1"), ("agent", "s2"), ("agent", "s0"), ("fusion", "solve.vote")]
    assert len(result.trace) == 4


@pytest.mark.parametrize("name", ["ann-gsm8k", "moa", "hypergraph-gsm8k"])
async def test_stepping_the_chain_gives_what_langgraph_gives(name: str):
    from hyperteam.topologies._graph import chain_steps
    from hyperteam.topologies.result import RunContext

    team = ht.load_team(name)
    graph = team.compile()
    assert chain_steps(graph) is not None  # every built-in team is a chain: run() steps it directly
    question = ht.datasets.load("demo", limit=1)[0].question
    async with ht.Runtime() as runtime:
        stepped = await team.run(question, runtime=runtime, model="sim:0.6")
        ctx = RunContext(runtime, "sim:0.6")
        state = await graph.ainvoke(
            {"task": question, "input": None, "answer": None, "trace": []}, config={"configurable": {"ctx": ctx}}
        )

    def steps(trace: list[ht.TraceEvent]) -> list[tuple[object, ...]]:
        return [(e.layer, e.agent, e.kind, e.answer, e.output, e.usage.total_tokens) for e in trace]

    assert (stepped.answer, stepped.text) == (state["answer"], state["input"])
    assert steps(stepped.trace) == steps(state["trace"])
    assert len(stepped.trace) > len(team.agents)


class _RawModel:
    """A model that returns whatever ChatResult ``fn`` makes of the request."""

    name = "raw"

    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        self.fn = fn

    async def chat(self, request: ht.ChatRequest, *, sample_index: int = 0) -> ht.ChatResult:
        return await self.fn(request)


async def test_an_agent_with_samples_votes_its_samples_from_one_request():
    seen: list[ht.ChatRequest] = []

    async def reply(request: ht.ChatRequest) -> ht.ChatResult:
        seen.append(request)
        texts = ["#### 7", "#### 8", "#### 7", "#### 9", "#### 7"]
        return ht.ChatResult([Completion(t) for t in texts[: request.n]], ht.Usage(100, 50, calls=1))

    solver = ht.Agent(name="solver", temperature=0.7, samples=5)
    team = ht.LayeredTeam([ht.Layer("sample", agents=[solver])], model=_RawModel(reply))
    result = await team.run("3 + 4?")
    assert len(seen) == 1 and seen[0].n == 5
    assert result.answer == "7"
    agents = [e.agent for e in result.trace if e.kind == "agent"]
    assert agents == ["solver#1", "solver#2", "solver#3", "solver#4", "solver#5"]
    assert (result.usage.calls, result.usage.prompt_tokens) == (1, 100)  # counted once, not five times


def test_samples_are_refused_where_an_agent_must_answer_once():
    solver = ht.Agent(name="solver", samples=3)
    with pytest.raises(ValueError, match="samples > 1"):
        ht.HypergraphTeam(agents=[solver, ht.Agent(name="b")], hyperedges=[["solver", "b"]])
    with pytest.raises(ValueError, match="samples > 1"):
        ht.Layer("solve", agents=[solver], fusion="chain")
