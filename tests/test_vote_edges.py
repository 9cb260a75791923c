"""Votes at their edges: what a trace says when nothing can be voted on, float ties, Borda ties, bad stats files.

Each assertion is something a user reads: the fused answer and text, the name the
fusion step carries in the trace, its reason, and the votes and weights it records.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ConfigError, ModelError
from hyperteam.fusion import FusionContext, get_fusion
from hyperteam.fusion.vote import majority_fallback
from hyperteam.models.types import Usage
from hyperteam.testing import FunctionModel
from tests.test_fusion import fuse, out
from tests.test_fusion_teams import _fusion_event, _model, _ranking_model, _team

# -- nothing to vote on ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "tag"), [("majority_vote", "vote"), ("weighted_vote", "weighted_vote")])
async def test_why_there_is_no_answer_and_which_text_is_kept(name: str, tag: str):
    empty = await fuse(name, [])
    assert empty.output.agent == f"L.{tag}" and empty.output.answer is None and empty.output.text == ""
    assert empty.reason == "no outputs to fuse" and empty.detail["votes"] == {}

    # A failed agent first, then two that answered nothing: the first usable text is kept for the next layer.
    unsure = [out("a", None, error="http_500: boom"), out("b", None), out("c", None)]
    result = await fuse(name, unsure)
    assert result.output.answer is None and result.output.text == "b is not sure"
    assert result.reason == "no agent gave an answer" and result.detail["votes"] == {}

    failed = await fuse(name, [out("a", "4", error="timeout: slow"), out("b", None, error="http_500: boom")])
    assert failed.reason == "every agent failed" and failed.output.text == "" and failed.output.agent == f"L.{tag}"


async def test_a_weighted_vote_with_no_answer_still_records_the_weights():
    result = await fuse({"name": "weighted_vote", "weights": {"a": 2.0}}, [out("a", None), out("b", None)])
    assert result.detail == {"votes": {}, "weights": {"a": 2.0, "b": 0.405465}}


async def test_a_fallback_with_nothing_to_vote_on_says_both_why_and_what_it_cost():
    # The aggregator is down and no agent gave an answer: no answer, the agents' text, and why.
    def down(request: ht.ChatRequest) -> str:
        raise ModelError("busy", kind="http_503")

    outputs = [out("a", None, error="http_500: boom"), out("b", None), out("c", None)]
    result = await fuse("llm_synthesize", outputs, FunctionModel(down))
    assert result.output.answer is None and result.output.text == "b is not sure"
    assert result.output.agent == "L.synthesize" and result.output.usage == Usage()
    assert result.reason == "aggregator failed (http_503); fell back to majority vote: no agent gave an answer"
    assert result.detail["fallback"] == "majority_vote" and result.detail["votes"] == {}
    assert "busy" in result.detail["error"]

    spent = Usage(prompt_tokens=120, completion_tokens=7, calls=1)
    result = majority_fallback("L", "judge", outputs, "unreadable scores", usage=spent, scores=None)
    assert result.output.usage == spent and result.output.agent == "L.judge"
    assert result.detail == {"votes": {}, "fallback": "majority_vote", "scores": None}


def test_a_fallback_with_a_winner_names_its_votes():
    outputs = [out("a", "5"), out("b", "4"), out("c", "4")]
    result = majority_fallback("L", "judge", outputs, "unreadable scores", scores=None)
    assert result.output.agent == "L.judge" and result.output.answer == "4" and result.output.text.startswith("b")
    assert result.reason == "unreadable scores; fell back to majority vote (2 of 3 on 4)"
    assert result.detail == {"fallback": "majority_vote", "votes": {"5": 1, "4": 2}, "scores": None}


# -- majority vote ---------------------------------------------------------------------------------


async def test_a_majority_says_how_many_agree_and_only_a_tie_says_tie():
    clear = await fuse("majority_vote", [out("a", "4"), out("b", "5"), out("c", "4")])
    assert clear.output.agent == "L.vote" and clear.reason == "2 of 3 answers agree on 4"
    tie = await fuse("majority_vote", [out("a", "5"), out("b", "4")])
    assert tie.output.answer == "5" and tie.reason == "1 of 2 answers agree on 5 (a tie, broken by agent order)"


# -- weighted vote ---------------------------------------------------------------------------------


async def test_a_clear_weighted_win_is_not_called_a_tie():
    result = await fuse({"name": "weighted_vote", "weights": {"a": 2.0, "b": 1.5}}, [out("a", "1"), out("b", "2")])
    assert result.output.agent == "L.weighted_vote" and result.output.answer == "1"
    assert result.reason == "1 has the most weight (2; answers: 2)"


async def test_weights_a_billionth_apart_tie_however_large_they_are():
    weights = {"a": 1_000_000.0, "b": 1_000_000.0001}
    result = await fuse({"name": "weighted_vote", "weights": weights}, [out("a", "1"), out("b", "2")])
    assert result.output.answer == "1" and result.reason.endswith("(a tie, broken by agent order)")


async def test_weights_that_cancel_to_rounding_noise_tie_with_a_zero_weight():
    # An agent at chance has weight 0; three others whose weights cancel leave 5.6e-17, not a real lead.
    weights = {"d": 0.0, "a": 0.1, "b": 0.2, "c": -0.3}
    outputs = [out("d", "1"), out("a", "2"), out("b", "2"), out("c", "2")]
    result = await fuse({"name": "weighted_vote", "weights": weights}, outputs)
    assert result.output.answer == "1" and "a tie, broken by agent order" in result.reason


async def test_a_weighted_tie_reason_and_the_recorded_weights_are_rounded_to_six_places():
    result = await fuse({"name": "weighted_vote", "weights": {"a": 0.1, "b": 0.3, "c": 0.2}}, [
        out("b", "2"), out("a", "1"), out("c", "1")
    ])  # fmt: skip
    assert result.reason == "2 has the most weight (0.3; answers: 2) (a tie, broken by agent order)"
    default = await fuse("weighted_vote", [out("a", "5"), out("b", "5"), out("c", "4")])
    # log(0.6 / 0.4) = 0.4054651081...: six places, as a report shows them.
    assert default.detail["weights"] == {"a": 0.405465, "b": 0.405465, "c": 0.405465}
    assert default.detail["votes"] == {"5": 0.81093, "4": 0.405465}


def test_accuracies_given_to_from_results_override_the_learned_ones():
    fusion = ht.fusion.WeightedVote.from_results([("a", False), ("b", True)], accuracies={"a": 0.9})
    assert fusion.accuracies == {"a": 0.9, "b": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", ":1: invalid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", ": expected {agent: {correct, total}}"),
        ('{"a": {"correct": "x", "total": 3}}', ": a: needs integer 'correct' and 'total'"),
        ('{"a": {"correct": 4, "total": 3}}', ": a: needs 0 <= correct <= total"),
    ],
)
def test_a_bad_stats_file_is_named_with_what_is_wrong(tmp_path: Path, content: str, message: str):
    path = tmp_path / "stats.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(f"stats_file {str(path)!r}{message}")):
        get_fusion({"name": "weighted_vote", "stats_file": str(path)})


def test_a_missing_stats_file_says_why_it_cannot_be_read(tmp_path: Path):
    path = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=re.escape(f"stats_file {str(path)!r}: cannot read: No such file")):
        get_fusion({"name": "weighted_vote", "stats_file": str(path)})


# -- ranked vote -----------------------------------------------------------------------------------


async def test_ranked_vote_without_candidates_or_with_one_makes_no_call():
    failed = await fuse("ranked_vote", [out("a", None, error="http_500: boom")])
    assert failed.output.agent == "L.ranked_vote" and failed.reason == "every agent failed"
    same = await fuse("ranked_vote", [out("a", "4"), out("b", "4")])
    assert same.output.agent == "L.ranked_vote" and same.output.text.startswith("a works")
    assert same.reason == "every answer is 4: nothing to rank"
    assert same.detail == {"candidates": ["4"], "votes": {"4": 2}}


async def test_ranked_vote_with_agents_but_no_way_to_call_them_is_a_config_error():
    def resolve(spec: str | None) -> object:
        raise AssertionError("no model call expected")

    fctx = FusionContext("L", resolve, agents=[ht.Agent(name="a"), ht.Agent(name="b")])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fusion 'ranked_vote' at 'L' needs to call agents, but this team cannot"):
        await get_fusion("ranked_vote").fuse("q", [out("a", "4"), out("b", "5")], fctx)


async def test_ranked_vote_records_every_ranking_and_a_clear_win_is_not_a_tie():
    answers = {"s0": "5", "s1": "7", "s2": "9"}
    rankings = {"s0": "Ranking: 1 > 2 > 3", "s1": "Ranking: 2 > 1 > 3", "s2": "Ranking: 2 > 3 > 1"}
    model = _ranking_model(answers, rankings)
    result = await _team("ranked_vote", model).run("What is 3 + 4?")
    event = _fusion_event(result)
    assert event.agent == "solve.ranked_vote" and result.answer == "7"
    assert event.detail["reason"] == "7 has the most Borda points (5, from 3 rankings)"
    assert event.detail["votes"] == {"5": 1, "7": 1, "9": 1} and event.detail["skipped"] == {}
    assert event.detail["rankings"] == {"s0": ["5", "7", "9"], "s1": ["7", "5", "9"], "s2": ["7", "9", "5"]}
    ranking_events = [ev for ev in result.trace if ev.kind == "agent" and "ranking" in ev.detail]
    assert [ev.layer for ev in ranking_events] == ["solve"] * 3
    prompt = ranking_events[0].input
    assert prompt.startswith("Problem:\nWhat is 3 + 4?") and "Rank all 3 candidates" in prompt
    assert "You are s0, careful math tutor." in prompt


async def test_a_borda_tie_with_equal_votes_goes_to_the_earlier_agents_answer():
    rankings = {"s0": "Ranking: 1 > 2", "s1": "Ranking: 2 > 1"}
    model = _ranking_model({"s0": "5", "s1": "7"}, rankings)
    result = await _team("ranked_vote", model, ("s0", "s1")).run("q")
    event = _fusion_event(result)
    assert result.answer == "5" and event.detail["points"] == {"5": 1, "7": 1}
    assert event.detail["reason"] == (
        "5 has the most Borda points (1, from 2 rankings) (a tie, broken by first-round votes, then agent order)"
    )


async def test_a_ranker_that_fails_or_does_not_rank_is_skipped_with_its_reason():
    def reply(who: str, prompt: str) -> str:
        if "Rank all" not in prompt:
            return {"s0": "#### 5", "s1": "#### 7", "s2": "#### 7"}[who]
        if who == "s0":
            raise ModelError("busy", kind="http_503")
        return "I would rather not rank."

    result = await _team("ranked_vote", _model(reply)).run("q")
    event = _fusion_event(result)
    assert event.agent == "solve.ranked_vote" and result.answer == "7"
    assert "busy" in event.detail["skipped"]["s0"]
    assert event.detail["skipped"]["s1"] == event.detail["skipped"]["s2"] == "no full ranking"
    assert event.detail["reason"] == "no usable ranking; fell back to majority vote (2 of 3 on 7)"
    assert event.detail["candidates"] == ["5", "7"] and event.detail["votes"] == {"5": 1, "7": 2}
