"""Fusion strategies inside layered teams on test doubles: extra calls, prompts, traces, saved specs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.testing import FunctionModel


def _agents(*names: str) -> list[ht.Agent]:
    base = ht.Agent(name="s0", role="careful math tutor", instructions="Solve. End with '#### <number>'.")
    return [base.clone(name=n) for n in names]


def _who(user: str) -> str:
    return user.rsplit("You are ", 1)[1].split(",")[0].split(".")[0]


def _model(reply: Callable[[str, str], str]) -> FunctionModel:
    """A model whose reply is ``reply(agent, prompt)``; fusion calls without an agent get agent ''."""

    def respond(request: ht.ChatRequest) -> str:
        user = request.messages[-1]["content"]
        return reply(_who(user) if "You are " in user else "", user)

    return FunctionModel(respond)


def _team(fusion: str | dict, model: FunctionModel, names: tuple[str, ...] = ("s0", "s1", "s2")) -> ht.LayeredTeam:
    return ht.LayeredTeam([ht.Layer("solve", agents=_agents(*names), fusion=fusion)], model=model)


def _fusion_event(result: ht.TeamResult) -> ht.TraceEvent:
    assert result.trace[-1].kind == "fusion"
    return result.trace[-1]


async def test_weighted_vote_lets_an_accurate_agent_outvote_two_weak_ones():
    model = _model(lambda who, _: "#### 4" if who == "expert" else "#### 5")
    accuracies = {"expert": 0.95, "weak1": 0.6, "weak2": 0.6}
    team = _team({"name": "weighted_vote", "accuracies": accuracies}, model, ("weak1", "expert", "weak2"))
    assert (await team.run("q")).answer == "4"
    team = _team("weighted_vote", model, ("weak1", "expert", "weak2"))
    assert (await team.run("q")).answer == "5"


async def test_confidence_vote_asks_for_logprobs_and_says_when_it_got_none():
    model = _model(lambda who, _: "#### 4" if who == "s1" else "#### 5")
    result = await _team("confidence_vote", model).run("q")
    assert all(r.extra.get("logprobs") is True for r in model.requests)
    fusion = _fusion_event(result)
    assert result.answer == "5" and fusion.detail["fallback"] == "majority_vote"
    assert "no logprobs from s0, s1, s2" in fusion.detail["reason"]


async def test_llm_select_returns_the_selected_response_and_counts_the_call():
    def reply(who: str, prompt: str) -> str:
        if "select the most consistent" in prompt:
            return "Response 3 agrees with 2.\nSelected: 3"
        return {"s0": "guess\n#### 5", "s1": "work\n#### 4", "s2": "careful work\n#### 4"}[who]

    result = await _team({"name": "llm_select"}, _model(reply)).run("q")
    assert result.text == "careful work\n#### 4" and result.answer == "4"
    assert result.usage.calls == 4 and result.usage_by_agent["solve.llm_select"].calls == 1
    assert _fusion_event(result).detail["agent"] == "s2"


@pytest.mark.parametrize("fusion", ["llm_select", "judge"])
async def test_llm_select_and_judge_fall_back_to_majority_when_their_model_fails(fusion):
    def reply(who: str, prompt: str) -> str:
        if not who or "You are the judge" in prompt:
            raise ModelError("http_503: busy", kind="http_503")
        return "#### 5" if who == "s1" else "#### 4"

    result = await _team(fusion, _model(reply)).run("q")
    event = _fusion_event(result)
    assert result.answer == "4" and event.detail["fallback"] == "majority_vote"
    assert "failed (http_503); fell back to majority vote" in event.detail["reason"]


async def test_judge_picks_the_best_scored_candidate_in_one_call():
    def reply(who: str, prompt: str) -> str:
        if "You are the judge" in prompt:
            return "Scores: 2, 9, 4"
        return {"s0": "#### 5", "s1": "right\n#### 6", "s2": "#### 5"}[who]

    result = await _team("judge", _model(reply)).run("q")
    assert result.answer == "6" and result.usage.calls == 4


def _ranking_model(answers: dict[str, str], rankings: dict[str, str]) -> FunctionModel:
    def reply(who: str, prompt: str) -> str:
        return rankings[who] if "Rank all" in prompt else f"#### {answers[who]}"

    return _model(reply)


async def test_ranked_vote_adds_borda_points_over_every_agents_ranking():
    answers = {"s0": "5", "s1": "7", "s2": "9"}
    # Borda with 3 candidates: 2, 1, 0 points by place. 5: 2+1+0, 7: 1+2+2, 9: 0+0+1.
    rankings = {"s0": "Ranking: 1 > 2 > 3", "s1": "Ranking: 2 > 1 > 3", "s2": "why...\nRanking: [2] > [3] > [1]"}
    model = _ranking_model(answers, rankings)
    result = await _team("ranked_vote", model).run("q")
    event = _fusion_event(result)
    assert result.answer == "7" and event.detail["points"] == {"5": 3, "7": 5, "9": 1}
    rank_events = [ev for ev in result.trace if ev.kind == "agent" and "ranking" in ev.detail]
    assert [ev.agent for ev in rank_events] == ["s0", "s1", "s2"] and result.usage.calls == 6
    assert rank_events[2].detail["ranking"] == ["7", "9", "5"]
    prompt = model.requests[3].messages[-1]["content"]
    assert prompt.index("[1] Answer: 5") < prompt.index("[3] Answer: 9") < prompt.index("You are s0")


async def test_ranked_vote_skips_bad_rankings_and_breaks_ties_by_votes():
    rankings = {"s0": "Ranking: 1 > 2", "s1": "Ranking: 2 > 1", "s2": "Ranking: 1 > 1"}
    result = await _team("ranked_vote", _ranking_model({"s0": "5", "s1": "7", "s2": "7"}, rankings)).run("q")
    event = _fusion_event(result)
    assert result.answer == "7" and event.detail["points"] == {"5": 1, "7": 1} and "tie" in event.detail["reason"]
    assert list(event.detail["skipped"]) == ["s2"]


async def test_ranked_vote_falls_back_to_majority_when_no_ranking_parses():
    rankings = dict.fromkeys(["s0", "s1", "s2"], "I would rather not rank.")
    result = await _team("ranked_vote", _ranking_model({"s0": "5", "s1": "7", "s2": "7"}, rankings)).run("q")
    event = _fusion_event(result)
    assert result.answer == "7" and event.detail["fallback"] == "majority_vote" and len(event.detail["skipped"]) == 3
    assert result.usage.calls == 6  # the failed ranking calls are still in the trace and the usage


async def test_debate_stops_after_round_one_when_everyone_agrees():
    model = _model(lambda who, _: "#### 4")
    result = await _team("debate", model).run("q")
    detail = _fusion_event(result).detail
    assert result.answer == "4" and len(model.requests) == 3
    assert detail["rounds"] == 1 and detail["stopped_early"] and detail["votes"] == [{"4": 3}]


async def test_debate_runs_to_max_rounds_when_the_agents_never_agree():
    model = _model(lambda who, _: f"#### {int(who[1]) + 1}")
    result = await _team("debate", model).run("q")
    detail = _fusion_event(result).detail
    assert len(model.requests) == 9 and detail["rounds"] == 3 and not detail["stopped_early"]
    assert detail["votes"] == [{"1": 1, "2": 1, "3": 1}] * 3 and not detail["consensus"]
    assert result.answer == "1"  # a three-way tie: the first agent's answer
    rounds = [ev.detail.get("round") for ev in result.trace if ev.kind == "agent"]
    assert rounds == [None] * 3 + [2] * 3 + [3] * 3


async def test_debate_goes_on_at_two_thirds_and_shares_the_prompt_prefix():
    def reply(who: str, prompt: str) -> str:
        return "#### 5" if who == "s2" and "Debate:" not in prompt else f"{who} agrees\n#### 4"

    model = _model(reply)
    result = await _team("debate", model).run("A shared question?")
    detail = _fusion_event(result).detail
    assert result.answer == "4" and detail["rounds"] == 2 and detail["stopped_early"]
    assert detail["votes"] == [{"4": 2, "5": 1}, {"4": 3}] and detail["agreement"] == [0.6667, 1.0]
    round2 = [r.messages[-1]["content"] for r in model.requests[3:]]
    shared = round2[0].split("You are s0")[0]
    assert all(p.startswith(shared) for p in round2) and "[s2] #### 5" in shared and "[s1] s1 agrees" in shared


async def test_chain_hands_each_agent_the_previous_output():
    def reply(who: str, prompt: str) -> str:
        return {"s0": "draft: 2 + 3 = 6\n#### 6", "s1": "fixed: 2 + 3 = 5\n#### 5", "s2": "final: 5\n#### 5"}[who]

    model = _model(reply)
    result = await _team("chain", model).run("2 + 3?")
    prompts = [r.messages[-1]["content"] for r in model.requests]
    assert [_who(p) for p in prompts] == ["s0", "s1", "s2"]
    assert "Work so far" not in prompts[0]
    assert "Solution by s0:\ndraft: 2 + 3 = 6" in prompts[1]
    assert "Solution by s1:\nfixed" in prompts[2] and "draft" not in prompts[2]
    assert result.answer == "5" and result.text == "final: 5\n#### 5" and result.usage.calls == 3
    assert _fusion_event(result).detail["final"] == "s2"


async def test_chain_ends_on_the_last_good_output_and_reads_the_layer_input():
    def reply(who: str, prompt: str) -> str:
        if who == "s2":
            raise ModelError("timeout: slow", kind="timeout")
        return {"first": "plan\n#### 1", "s0": "step\n#### 6", "s1": "better\n#### 7"}[who]

    model = _model(reply)
    layers = [
        ht.Layer("plan", agents=_agents("first")),
        ht.Layer("refine", agents=_agents("s0", "s1", "s2"), fusion="chain"),
    ]
    result = await ht.LayeredTeam(layers, model=model).run("q")
    assert "Result of the previous step:\nplan" in model.requests[1].messages[-1]["content"]
    assert result.answer == "7" and result.text == "better\n#### 7"
    assert "s2 failed" in _fusion_event(result).detail["reason"]


async def test_adaptive_learns_from_a_trace_and_then_follows_the_reliable_source():
    model = _model(lambda who, _: "right\n#### 4" if who == "s0" else "#### 5")
    team = _team({"name": "adaptive", "top_k": 3}, model)
    layer = team.layers[0]
    first = await team.run("q")
    assert first.answer == "5"
    fusion = layer.fusion_impl
    for _ in range(3):
        fusion = fusion.feedback(first.trace, "4", layer="solve")
    assert set(fusion.scores) == {"s0", "s1", "s2"} and fusion.scores["s0"] > 0.7 > 0.3 > fusion.scores["s1"]
    layer.fusion = fusion.spec()
    assert (await team.run("q")).answer == "4"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
async def test_an_adaptive_team_round_trips_its_scores_through_a_file(tmp_path: Path, suffix: str):
    spec = {"name": "adaptive", "scores": {"s0": 0.2, "s1": 0.9, "s2": 0.3}, "top_k": 1}
    model = _model(lambda who, _: f"#### {int(who[1]) + 1}")
    _team(spec, model).save(tmp_path / f"team{suffix}")
    loaded = ht.load_team(str(tmp_path / f"team{suffix}"))
    assert loaded.layers[0].fusion == spec
    result = await loaded.run("q", model=model)
    assert result.answer == "2" and _fusion_event(result).detail["selected"] == ["s1"]


async def test_a_chain_where_every_agent_fails_ends_with_no_answer_not_an_error():
    def reply(who: str, prompt: str) -> str:
        raise ModelError("connection: refused", kind="connection")

    result = await _team("chain", _model(reply), ("s0", "s1")).run("q")
    assert result.answer is None and _fusion_event(result).detail["reason"] == "every agent failed"
    assert [ev.error for ev in result.trace if ev.kind == "agent"] == ["connection: connection: refused"] * 2
