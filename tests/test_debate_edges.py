"""A debate after a first layer, and a debate asked to call agents it does not have."""

from __future__ import annotations

import pytest

import hyperteam as ht
from hyperteam.agents.messages import AgentOutput
from hyperteam.agents.parsing import extract_answer
from hyperteam.errors import ConfigError
from hyperteam.fusion import FusionContext, get_fusion
from tests.test_fusion import out


def _context(agents: list[ht.Agent], replies: dict[str, str], **kw: object) -> tuple[FusionContext, list[str]]:
    """A fusion context whose agents answer from ``replies``; the prompts they got are collected."""
    prompts: list[str] = []

    async def call(agent: ht.Agent, messages: list[dict[str, str]]) -> AgentOutput:
        prompts.append(messages[-1]["content"])
        text = replies[agent.name]
        return AgentOutput(agent.name, text, extract_answer(text))

    def resolve(spec: str | None) -> object:
        raise AssertionError("a debate calls its agents, not a model")

    return FusionContext("L", resolve, agents=agents, call_agent=call, **kw), prompts  # type: ignore[arg-type]


AGENTS = [ht.Agent(name=n) for n in ("a", "b", "c")]
SPLIT = [out("a", "4"), out("b", "5"), out("c", "6")]
AGREE = {"a": "#### 4", "b": "#### 4", "c": "#### 4"}


@pytest.mark.parametrize(("title", "shown"), [("", "Input"), ("Draft plan", "Draft plan")])
async def test_a_debate_after_a_first_layer_shows_that_layers_output_under_its_title(title: str, shown: str):
    fctx, prompts = _context(AGENTS, AGREE, layer_input="the plan: add them", input_title=title)
    result = await get_fusion("debate").fuse("What is 2 + 2?", SPLIT, fctx)
    context = result.events[0].input
    assert context.startswith(f"{shown}:\nthe plan: add them\n\nRound 2 of a debate.")
    assert len(prompts) == 3 and all(context in p for p in prompts)
    assert result.output.answer == "4" and result.output.agent == "L.debate"


async def test_a_first_layer_debate_has_no_input_section():
    fctx, _ = _context(AGENTS, AGREE)
    result = await get_fusion("debate").fuse("What is 2 + 2?", SPLIT, fctx)
    assert result.events[0].input.startswith("Round 2 of a debate.")
    assert [ev.detail["round"] for ev in result.events] == [2, 2, 2]
    assert [ev.layer for ev in result.events] == ["L", "L", "L"]


async def test_outputs_from_agents_the_debate_cannot_call_are_a_config_error_naming_them():
    fctx, prompts = _context(AGENTS[:1], AGREE)
    outputs = [out("a", "4"), out("x", "5"), out("y", "6")]
    with pytest.raises(ConfigError, match=r"^fusion 'debate' at 'L' cannot call x, y: not among its agents$"):
        await get_fusion("debate").fuse("q", outputs, fctx)
    assert prompts == []  # refused before any call


async def test_a_debate_that_needs_no_round_never_checks_its_agents():
    fctx, prompts = _context([], AGREE)
    result = await get_fusion("debate").fuse("q", [out("a", "4"), out("b", "4"), out("x", "4")], fctx)
    assert result.output.answer == "4" and prompts == [] and result.detail["rounds"] == 1
    assert result.reason == "3 of 3 agents answer 4 in round 1 (consensus)"


async def test_the_debaters_see_the_problem_again_in_each_round():
    fctx, prompts = _context(AGENTS, AGREE)
    await get_fusion("debate").fuse("What is 2 + 2?", SPLIT, fctx)
    assert len(prompts) == 3 and all("What is 2 + 2?" in p for p in prompts)


async def test_a_debate_with_no_answer_to_debate_is_named_for_its_layer():
    fctx, prompts = _context(AGENTS, AGREE)
    result = await get_fusion("debate").fuse("q", [out("a", None), out("b", None, error="timeout: slow")], fctx)
    assert result.output.agent == "L.debate" and result.output.answer is None and prompts == []
    assert result.reason == "no agent gave an answer"


async def test_agreement_exactly_at_the_threshold_is_not_consensus():
    fctx, _ = _context(AGENTS, AGREE)
    outputs = [out("a", "4"), out("b", "4"), out("c", "5")]  # 2/3 agree: the default threshold, not above it
    result = await get_fusion({"name": "debate", "max_rounds": 1}).fuse("q", outputs, fctx)
    assert result.detail["consensus"] is False and result.detail["agreement"] == [0.6667]
    assert result.reason == "2 of 3 agents answer 4 in round 1 (no consensus after 1 rounds)"
