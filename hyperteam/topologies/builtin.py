"""Built-in teams, loadable by name (``hyperteam run --team ann-gsm8k``)."""

from __future__ import annotations

from collections.abc import Callable

from hyperteam.agents.agent import Agent
from hyperteam.topologies.layered import Layer, LayeredTeam
from hyperteam.topologies.team import Team

# The shared system prompt (prompts/agent.yaml) already asks for step-by-step
# reasoning and a final "#### <answer>" line; per-agent text stays short, since
# it is the part of each prompt that a prefix cache cannot share.


def single() -> Team:
    """One agent, one call: the baseline every team must beat."""
    solver = Agent(name="solver", role="a careful math tutor", instructions="Solve the problem.")
    return LayeredTeam([Layer("solve", agents=[solver])], name="single", description=single.__doc__ or "")


def self_consistency(samples: int = 5) -> Team:
    """Five independent samples at temperature 0.7, majority vote (Wang et al. 2023)."""
    base = Agent(
        name="sample0",
        role="a careful math tutor",
        instructions="Solve the problem.",
        temperature=0.7,
    )
    agents = [base.clone(name=f"sample{i}") for i in range(samples)]
    return LayeredTeam(
        [Layer("sample", agents=agents, fusion="majority_vote")],
        name="self-consistency",
        description=self_consistency.__doc__ or "",
    )


def ann_gsm8k() -> Team:
    """An ANN team for math word problems: three diverse solvers voted, then a verifier.

    Layer 1 ("solve") runs three solvers with different roles in parallel and
    takes their majority answer; layer 2 ("verify") checks that solution and
    corrects it where it is wrong.
    """
    solvers = [
        Agent(name="tutor", role="a careful math tutor", instructions="Solve the problem."),
        Agent(
            name="algebraist",
            role="an algebraist who writes the quantities as equations",
            instructions="Write the equations and solve them.",
        ),
        Agent(
            name="accountant",
            role="a meticulous accountant who tracks every quantity",
            instructions="Track each quantity line by line.",
        ),
    ]
    verifier = Agent(
        name="verifier",
        role="a strict verifier",
        instructions="Check the proposed solution step by step; fix any wrong step, else restate the answer.",
    )
    return LayeredTeam(
        [
            Layer("solve", agents=solvers, fusion="majority_vote"),
            Layer("verify", agents=[verifier], fusion="majority_vote", input_title="Proposed solution"),
        ],
        name="ann-gsm8k",
        description=(ann_gsm8k.__doc__ or "").split("\n")[0],
    )


BUILTIN_TEAMS: dict[str, Callable[[], Team]] = {
    "single": single,
    "self-consistency": self_consistency,
    "ann-gsm8k": ann_gsm8k,
}
