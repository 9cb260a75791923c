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
