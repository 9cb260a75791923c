"""Voting does what the arithmetic says it should, on the simulated model (issue 3's check)."""

from __future__ import annotations

import asyncio

import hyperteam as ht
from tests.conftest import needs_data

N = 1000


def _accuracy(team_name: str) -> float:
    problems = ht.datasets.load("gsm8k", split="test", limit=N)
    team = ht.load_team(team_name)

    async def run_all() -> list[ht.TeamResult]:
        return await asyncio.gather(*(team.run(p.question, model="sim:0.7") for p in problems))

    results = asyncio.run(run_all())
    return sum(r.answer == p.answer for r, p in zip(results, problems, strict=True)) / N


@needs_data
def test_one_sim_agent_scores_its_accuracy_and_five_voting_score_higher(data_dir):
    single = _accuracy("single")
    assert abs(single - 0.70) <= 0.04
    # Five independent agents at 0.7, majority vote: the binomial figure is 0.837,
    # less two standard errors 0.81; plurality over differing wrong answers does better.
    assert _accuracy("self-consistency") >= 0.81
