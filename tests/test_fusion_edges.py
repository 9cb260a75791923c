"""Fusion at its edges: float ties in a weighted vote, debaters that fail mid-debate or in round one."""

from __future__ import annotations

from hyperteam.errors import ModelError
from hyperteam.fusion.debate import agreement
from tests.test_fusion import fuse, out
from tests.test_fusion_teams import _fusion_event, _model, _team


async def test_a_weighted_tie_within_float_rounding_goes_to_agent_order():
    # 0.1 + 0.2 != 0.3 in floating point: the two answers still tie, and the earlier agent's answer wins.
    outputs = [out("b", "2"), out("a", "1"), out("c", "1")]
    result = await fuse({"name": "weighted_vote", "weights": {"a": 0.1, "b": 0.3, "c": 0.2}}, outputs)
    assert result.output.answer == "2" and result.output.text.startswith("b works")
    assert "a tie, broken by agent order" in result.reason
    assert result.detail["votes"] == {"2": 0.3, "1": 0.3}


async def test_a_debater_whose_call_fails_keeps_its_previous_answer():
    def reply(who: str, prompt: str) -> str:
        if "Debate:" not in prompt:  # round 1
            return {"s0": "#### 4", "s1": "#### 4", "s2": "#### 5"}[who]
        if who == "s0":
            raise ModelError("http_503: busy", kind="http_503")
        return {"s1": "#### 5", "s2": "#### 4"}[who]

    result = await _team({"name": "debate", "max_rounds": 2}, _model(reply)).run("q")
    detail = _fusion_event(result).detail
    assert detail["votes"] == [{"4": 2, "5": 1}, {"4": 2, "5": 1}]  # s0's round-1 answer still counts
    assert result.answer == "4" and detail["rounds"] == 2
    assert [ev.error for ev in result.trace if ev.kind == "agent" and ev.error] != []


async def test_a_failed_debater_counts_against_agreement():
    def reply(who: str, prompt: str) -> str:
        if who == "s0" and "Debate:" not in prompt:
            raise ModelError("http_503: busy", kind="http_503")
        return "#### 4"

    model = _model(reply)
    result = await _team("debate", model).run("q")
    detail = _fusion_event(result).detail
    # Two of three agree in round 1: not more than 2/3, so the debate goes on and s0 joins in round 2.
    assert detail["agreement"] == [0.6667, 1.0] and detail["rounds"] == 2 and detail["stopped_early"]
    assert len(model.requests) == 6 and result.answer == "4"


def test_agreement_is_a_share_of_all_debaters():
    assert agreement([out("a", "4"), out("b", "4"), out("c", None, error="timeout: slow")]) == 2 / 3
    assert agreement([out("a", "4"), out("b", "5"), out("c", None)]) == 1 / 3
    assert agreement([out("a", None, error="x")]) == 0.0


async def test_a_debate_says_how_it_ended_and_traces_every_extra_call():
    def reply(who: str, prompt: str) -> str:
        return "#### 5" if who == "s2" and "Debate:" not in prompt else f"{who} agrees\n#### 4"

    model = _model(reply)
    result = await _team("debate", model).run("q")
    fusion = _fusion_event(result)
    assert fusion.detail["reason"] == "3 of 3 agents answer 4 in round 2 (consensus)"
    assert fusion.agent == "solve.debate" and fusion.layer == "solve" and result.usage.calls == 6
    round2 = [ev for ev in result.trace if ev.kind == "agent" and ev.detail.get("round") == 2]
    assert [(ev.layer, ev.agent) for ev in round2] == [("solve", "s0"), ("solve", "s1"), ("solve", "s2")]
    assert all(ev.input and "[s2] #### 5" in ev.input for ev in round2)  # the round's shared context


async def test_a_debate_without_consensus_says_so_and_a_tie_says_how_it_was_broken():
    model = _model(lambda who, _: f"#### {int(who[1]) + 1}")
    result = await _team({"name": "debate", "max_rounds": 2}, model).run("q")
    reason = _fusion_event(result).detail["reason"]
    assert reason == "1 of 3 agents answer 1 in round 2 (no consensus after 2 rounds) (a tie, broken by agent order)"


async def test_consensus_needs_strictly_more_than_the_threshold_and_reached_at_the_last_round_is_not_early():
    answers = iter(["#### 4", "#### 5", "#### 4", "#### 5"] + ["#### 4"] * 4)
    model = _model(lambda who, _: next(answers))
    names = ("s0", "s1", "s2", "s3")
    result = await _team({"name": "debate", "max_rounds": 2, "consensus": 0.5}, model, names).run("q")
    detail = _fusion_event(result).detail
    assert detail["agreement"] == [0.5, 1.0] and detail["rounds"] == 2  # exactly one half did not stop round 1
    assert detail["consensus"] and not detail["stopped_early"]  # reached, but in the last allowed round


async def test_an_agent_that_never_answers_is_shown_to_the_others_as_having_no_solution():
    def reply(who: str, prompt: str) -> str:
        if who == "s0":
            raise ModelError("http_503: busy", kind="http_503")
        return "#### 4" if who == "s1" else "#### 5"

    model = _model(reply)
    result = await _team({"name": "debate", "max_rounds": 2}, model).run("q")
    round2 = [r.messages[-1]["content"] for r in model.requests if "Debate:" in r.messages[-1]["content"]]
    assert round2 and all("[s0] (no solution)" in p for p in round2)
    assert result.answer == "4"
