"""Fusion strategies on hand-made outputs whose right result is known: votes, ties, fallbacks, edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hyperteam.agents.messages import AgentOutput
from hyperteam.errors import ConfigError, ModelError
from hyperteam.fusion import REGISTRY, FusionContext, FusionResult, get_fusion
from hyperteam.fusion._parse import parse_ranking, parse_scores, tagged_line
from hyperteam.fusion.weighted import WeightedVote, log_odds
from hyperteam.testing import ScriptedModel


def out(
    agent: str, answer: str | None, *, error: str | None = None, logprobs: list[float] | None = None
) -> AgentOutput:
    text = "" if error else (f"{agent} works it out\n#### {answer}" if answer else f"{agent} is not sure")
    return AgentOutput(agent, text, answer, error=error, logprobs=logprobs)


def ctx(model: object = None) -> FusionContext:
    def resolve(spec: str | None) -> object:
        if model is None:
            raise AssertionError("this fusion should not call a model")
        return model

    return FusionContext("L", resolve)  # type: ignore[arg-type]


async def fuse(spec: str | dict, outputs: list[AgentOutput], model: object = None) -> FusionResult:
    return await get_fusion(spec).fuse("What is 2 + 2?", outputs, ctx(model))


# Strategies that decide from the outputs alone, or make no call with fewer than two candidates.
LOCAL = ["majority_vote", "weighted_vote", "confidence_vote", "adaptive", "ranked_vote", "debate"]
WITH_MODEL = ["llm_select", "judge", "llm_synthesize"]


@pytest.mark.parametrize("name", LOCAL + WITH_MODEL)
async def test_no_usable_output_gives_no_answer_and_a_reason(name):
    failed = [out("a", None, error="http_500: boom"), out("b", "4", error="timeout: slow")]
    result = await fuse(name, failed)
    assert result.output.answer is None and "failed" in result.reason
    nothing = await fuse(name, [out("a", None)])
    assert nothing.output.answer is None and nothing.reason


@pytest.mark.parametrize("name", LOCAL + WITH_MODEL)
async def test_a_single_agent_passes_its_answer_through_without_calls(name):
    result = await fuse(name, [out("a", "4", logprobs=[-0.1, -0.2])])
    assert result.output.answer == "4" and result.output.text.startswith("a works")
    assert result.output.usage.calls == 0 and result.events == []


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_unknown_params_name_the_fusion_and_the_field(name):
    with pytest.raises(ConfigError, match=rf"fusion '{name}': bogus: Extra inputs"):
        get_fusion({"name": name, "bogus": 1})


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "weighted_vote", "accuracies": {"a": 0.9}, "default_accuracy": 0.55},
        {"name": "judge", "model": "sim:0.9", "max_score": 5},
        {"name": "debate", "max_rounds": 2},
        {"name": "adaptive", "scores": {"a": 0.8}, "top_k": 1},
        "chain",
    ],
)
def test_specs_round_trip(spec):
    assert get_fusion(spec).spec() == spec


# weighted_vote


async def test_one_accurate_agent_outvotes_two_weak_ones():
    outputs = [out("weak1", "5"), out("expert", "4"), out("weak2", "5")]
    result = await fuse({"name": "weighted_vote", "accuracies": {"expert": 0.95, "weak1": 0.6, "weak2": 0.6}}, outputs)
    assert result.output.answer == "4" and result.output.text.startswith("expert")
    assert result.detail["votes"] == {"5": pytest.approx(2 * log_odds(0.6)), "4": pytest.approx(log_odds(0.95))}
    # With no measurements every agent has the default accuracy: the majority wins.
    assert (await fuse("weighted_vote", outputs)).output.answer == "5"
    # Raw weights override accuracies.
    spec = {"name": "weighted_vote", "accuracies": {"expert": 0.95}, "weights": {"expert": 0.5}}
    assert (await fuse(spec, outputs)).output.answer == "5"


async def test_weighted_ties_go_to_agent_order_and_failed_agents_do_not_vote():
    outputs = [out("a", "7"), out("b", "8"), out("expert", "8", error="http_500: down")]
    result = await fuse({"name": "weighted_vote", "accuracies": {"expert": 0.99}}, outputs)
    assert result.output.answer == "7" and "tie" in result.reason
    assert "8" in result.detail["votes"] and result.detail["votes"]["8"] == pytest.approx(log_odds(0.6))


def test_log_odds_clip_accuracy_to_one_percent_from_certainty():
    assert log_odds(1.0) == log_odds(0.99) == pytest.approx(4.59512, abs=1e-5)
    assert log_odds(0.0) == pytest.approx(-log_odds(1.0)) and log_odds(0.5) == 0.0


async def test_accuracies_are_learned_from_a_stats_file_with_a_laplace_prior(tmp_path: Path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"expert": {"correct": 18, "total": 20}, "weak1": {"correct": 0, "total": 0}}))
    fusion = WeightedVote(stats_file=str(stats))
    assert fusion.accuracy("expert") == pytest.approx(19 / 22)
    assert fusion.accuracy("weak1") == 0.5 and fusion.accuracy("weak2") == 0.6  # no data: prior; unknown: default
    outputs = [out("weak1", "5"), out("expert", "4"), out("weak2", "5")]
    assert (await fusion.fuse("q", outputs, ctx())).output.answer == "4"


def test_a_weighted_vote_from_scored_pairs_and_bad_stats_files(tmp_path: Path):
    fusion = WeightedVote.from_results([("a", True), ("a", True), ("a", False), ("b", False)], default_accuracy=0.7)
    assert fusion.accuracies == {"a": pytest.approx(0.6), "b": pytest.approx(1 / 3)} and fusion.default_accuracy == 0.7
    with pytest.raises(ConfigError, match=r"fusion 'weighted_vote': stats_file .*missing\.json.*cannot read"):
        get_fusion({"name": "weighted_vote", "stats_file": str(tmp_path / "missing.json")})
    with pytest.raises(ConfigError, match=r"fusion 'weighted_vote': accuracies: must be in \[0, 1\]; got a=1.2"):
        get_fusion({"name": "weighted_vote", "accuracies": {"a": 1.2}})
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": {"correct": 3}}')
    with pytest.raises(ConfigError, match="a: needs integer 'correct' and 'total'"):
        get_fusion({"name": "weighted_vote", "stats_file": str(bad)})


# confidence_vote


async def test_confident_agent_outvotes_two_unsure_ones():
    outputs = [
        out("a", "5", logprobs=[-2.0, -2.0]),
        out("b", "4", logprobs=[-0.01, -0.03]),
        out("c", "5", logprobs=[-2.5]),
    ]
    result = await fuse("confidence_vote", outputs)
    assert result.output.answer == "4" and "fallback" not in result.detail
    assert result.detail["confidences"]["b"] == pytest.approx(math.exp(-0.02), abs=1e-6)


async def test_confidence_vote_falls_back_to_majority_without_logprobs():
    outputs = [out("a", "5", logprobs=[-3.0]), out("b", "4", logprobs=[-0.01]), out("c", "5")]
    result = await fuse("confidence_vote", outputs)
    assert result.output.answer == "5" and result.detail["fallback"] == "majority_vote"
    assert "no logprobs from c" in result.reason and "fell back to majority vote" in result.reason


# llm_select and judge


async def test_llm_select_returns_the_chosen_response_verbatim():
    outputs = [out("a", "5"), out("b", "4"), out("c", "4")]
    with ScriptedModel(["Responses 2 and 3 agree.\n**Selected:** [2]\n#### 4"]) as model:
        result = await fuse("llm_select", outputs, model)
    assert result.output.text == outputs[1].text and result.output.answer == "4"
    assert result.output.usage.calls == 1 and result.detail["selected"] == 2
    prompt = model.requests[0].messages[-1]["content"]
    assert prompt.index("What is 2 + 2?") < prompt.index("[3] c works") < prompt.index("Selected: <k>")


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("Selected: 7", "not 1..3"),
        ("I like the second one best.", "named no response"),
        ("Selected: 2 or 3", "not 1..3"),
        (ModelError("http_500: boom", kind="http_500"), "selector failed (http_500)"),
    ],
)
async def test_llm_select_falls_back_to_majority_vote(reply, why):
    outputs = [out("a", "4"), out("b", "5"), out("c", "4")]
    with ScriptedModel([reply]) as model:
        result = await fuse("llm_select", outputs, model)
    assert result.output.answer == "4" and result.output.text == outputs[0].text
    assert why in result.reason and result.detail["fallback"] == "majority_vote"
    assert result.output.usage.calls == (0 if isinstance(reply, ModelError) else 1)


async def test_judge_returns_the_best_scored_candidate():
    outputs = [out("a", "5"), out("b", "4"), out("c", "6")]
    with ScriptedModel(["1 is off by one. 2 is right.\nScores: 3, 9.5, 2"]) as model:
        result = await fuse({"name": "judge"}, outputs, model)
    assert result.output.text == outputs[1].text and result.output.usage.calls == 1
    assert result.detail["scores"] == {"a": 3.0, "b": 9.5, "c": 2.0}


async def test_judge_ties_go_to_the_answer_more_candidates_share():
    outputs = [out("a", "5"), out("b", "4"), out("c", "4")]
    result = await fuse("judge", outputs, ScriptedModel(["Scores: 8, 2, 8"]))
    assert result.output.text == outputs[2].text and "tie" in result.reason


@pytest.mark.parametrize("reply", ["Scores: 8, 9", "Scores: 11, 2, 3", "Scores: high, low, low", "8/10, 9/10, 1/10"])
async def test_judge_falls_back_to_majority_vote_on_bad_scores(reply):
    outputs = [out("a", "5"), out("b", "4"), out("c", "4")]
    result = await fuse({"name": "judge", "max_score": 10}, outputs, ScriptedModel([reply]))
    assert result.output.answer == "4" and result.detail["fallback"] == "majority_vote"
    assert result.output.usage.calls == 1


def test_parsers_are_strict():
    assert tagged_line("Selected: 1\nmore\nselected: 3\n#### 4", "Selected") == "3"
    assert parse_scores("1, 2.5 3", 3, 10) == [1.0, 2.5, 3.0] and parse_scores("1, 2", 3, 10) is None
    assert parse_ranking("[2] > 3 > 1", 3) == [1, 2, 0]
    assert parse_ranking("2 > 2 > 1", 3) is None and parse_ranking("2 > 1", 3) is None


# adaptive


async def test_adaptive_selects_the_top_k_sources_and_weights_them_by_score():
    outputs = [out("a", "5"), out("b", "5"), out("c", "4"), out("d", "4"), out("e", "4")]
    scores = {"a": 0.9, "b": 0.8, "c": 0.3, "d": 0.2, "e": 0.7}
    result = await fuse({"name": "adaptive", "scores": scores, "top_k": 3, "vote": "reliability"}, outputs)
    assert result.detail["selected"] == ["a", "b", "e"]
    assert result.output.answer == "5" and result.detail["votes"] == {"5": pytest.approx(1.7), "4": pytest.approx(0.7)}


async def test_adaptive_scores_move_toward_the_reliable_source_and_then_select_it():
    fusion = get_fusion({"name": "adaptive", "top_k": 3})
    outputs = [out("a", "4"), out("b", "5"), out("c", "5")]
    assert (await fusion.fuse("q", outputs, ctx())).output.answer == "5"  # equal scores: the majority
    for gold in ("4", "4.0", "$4"):
        fusion = fusion.feedback(outputs, gold)
    assert fusion.scores == {"a": pytest.approx(0.744), "b": pytest.approx(0.256), "c": pytest.approx(0.256)}
    result = await fusion.fuse("q", outputs, ctx())
    assert result.output.answer == "4" and result.output.text.startswith("a works")
    top1 = fusion.model_copy(update={"top_k": 1})
    assert (await top1.fuse("q", outputs, ctx())).detail["selected"] == ["a"]


def test_adaptive_counts_failures_as_wrong_and_validates_scores():
    fusion = get_fusion({"name": "adaptive", "learning_rate": 0.5}).feedback([out("a", "4", error="timeout: x")], 4)
    assert fusion.scores == {"a": 0.25}
    with pytest.raises(ConfigError, match=r"fusion 'adaptive': scores: must be in \[0, 1\]; got a=1.5"):
        get_fusion({"name": "adaptive", "scores": {"a": 1.5}})


# majority_vote (through the shared helpers)


async def test_majority_vote_ignores_answerless_outputs_and_breaks_ties_by_agent_order():
    result = await fuse("majority_vote", [out("a", "7"), out("b", "8"), out("c", None)])
    assert result.output.answer == "7" and "tie" in result.reason and result.detail["votes"] == {"7": 1, "8": 1}


async def test_model_calls_stay_off_when_every_candidate_agrees():
    outputs = [out("a", "4"), out("b", "4")]
    result = await fuse("ranked_vote", outputs)
    assert result.output.answer == "4" and "nothing to rank" in result.reason
    debate = await fuse("debate", outputs)  # this context cannot call agents: any round would fail
    assert debate.output.answer == "4" and debate.detail["rounds"] == 1 and debate.detail["stopped_early"]
