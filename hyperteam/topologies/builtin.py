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
    """Five samples at temperature 0.7 from one request (n=5), majority vote (Wang et al. 2023)."""
    solver = Agent(
        name="solver",
        role="a careful math tutor",
        instructions="Solve the problem.",
        temperature=0.7,
        samples=samples,
    )
    return LayeredTeam(
        [Layer("sample", agents=[solver], fusion="majority_vote")],
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


def _math_agents() -> list[Agent]:
    """Five math solvers with different habits, shared by the graph and hypergraph teams."""
    return [
        Agent(name="tutor", role="a careful math tutor", instructions="Solve the problem."),
        Agent(name="algebraist", role="an algebraist", instructions="Write the equations and solve them."),
        Agent(name="accountant", role="a meticulous accountant", instructions="Track each quantity line by line."),
        Agent(name="estimator", role="an estimator", instructions="Check magnitudes and units as you go."),
        Agent(name="skeptic", role="a skeptic", instructions="Look for the trap in the question."),
    ]


_PEERS = "Consider the other solutions, then give your own."


def moa() -> Team:
    """Mixture-of-Agents (Wang et al. 2024): 3 proposers x 2 layers, then an aggregator.

    The first layer's responses all go to the second layer's proposers, whose
    responses an aggregator synthesises into one answer: 7 calls a problem.
    """
    proposers = _math_agents()[:3]
    refiners = [a.clone(name=f"{a.name}2", instructions=_PEERS) for a in proposers]
    return LayeredTeam(
        [
            Layer("propose", agents=proposers, fusion="collect"),
            Layer("refine", agents=refiners, fusion="llm_synthesize", input_title="Responses from the team"),
        ],
        name="moa",
        description=(moa.__doc__ or "").split("\n")[0],
    )


def debate() -> Team:
    """Three agents debate (Du et al. 2023) until more than 2/3 agree, at most 3 rounds (DyLAN's early stop)."""
    return LayeredTeam(
        [Layer("debate", agents=_math_agents()[:3], fusion={"name": "debate", "max_rounds": 3})],
        name="debate",
        description=debate.__doc__ or "",
    )


def chain() -> Team:
    """A chain: a solver drafts, a checker reviews the draft, an editor writes the final answer."""
    return LayeredTeam(
        [
            Layer(
                "draft", agents=[Agent(name="solver", role="a careful math tutor", instructions="Solve the problem.")]
            ),
            Layer(
                "review",
                agents=[Agent(name="checker", role="a strict checker", instructions="Check every step; fix mistakes.")],
                input_title="Draft solution",
            ),
            Layer(
                "final",
                agents=[Agent(name="editor", role="an editor", instructions="Write the final, correct solution.")],
                input_title="Reviewed solution",
            ),
        ],
        name="chain",
        description=chain.__doc__ or "",
    )


def star() -> Team:
    """A star: four spokes solve independently; the hub reads all four and answers."""
    hub = Agent(name="hub", role="the team lead", instructions="Weigh the solutions and give the correct answer.")
    return LayeredTeam(
        [
            Layer("spokes", agents=_math_agents()[:4], fusion="collect"),
            Layer("hub", agents=[hub], input_title="Solutions from the team"),
        ],
        name="star",
        description=star.__doc__ or "",
    )


def hypergraph_gsm8k() -> Team:
    """Five agents in two hyperedges of three (sharing one member), three rounds, majority vote.

    In each round an agent reads the latest outputs of its hyperedges'
    members; the bridging agent carries information between the groups.
    """
    from hyperteam.topologies.hypergraph import HypergraphTeam

    agents = _math_agents()
    names = [a.name for a in agents]
    return HypergraphTeam(
        agents=agents,
        hyperedges=[names[:3], names[2:]],
        rounds=3,
        fusion="majority_vote",
        name="hypergraph-gsm8k",
        description=(hypergraph_gsm8k.__doc__ or "").split("\n")[0],
    )


def complete() -> Team:
    """The complete graph on the same five agents: everyone reads everyone, three rounds, majority vote."""
    from hyperteam.topologies.hypergraph import HypergraphTeam

    agents = _math_agents()
    return HypergraphTeam(
        agents=agents,
        hyperedges=[[a.name for a in agents]],
        rounds=3,
        fusion="majority_vote",
        name="complete",
        description=complete.__doc__ or "",
    )


def hyperagent_gsm8k() -> Team:
    """HyperAgent on the same five agents: a generated hypergraph per query, three rounds, majority vote.

    Built in, the generator is untrained: seeded (seed 0, so every run picks
    the same hypergraph for the same query) and warm-started toward the
    anchor chain, so it starts as each agent with its chain neighbours.
    Train one with ``hyperteam train --topology hyperagent --team
    hyperagent-gsm8k ...`` and use it with ``topology: {learned: FILE}``.
    Needs torch (``pip install 'hyperteam[learn]'``) when it runs.
    """
    from hyperteam.topologies.learned.team import LearnedHypergraphTeam

    return LearnedHypergraphTeam(
        agents=_math_agents(),
        topology={"learner": "hyperagent", "seed": 0},
        rounds=3,
        fusion="majority_vote",
        name="hyperagent-gsm8k",
        description=(hyperagent_gsm8k.__doc__ or "").split("\n")[0],
    )


BUILTIN_TEAMS: dict[str, Callable[[], Team]] = {
    "single": single,
    "self-consistency": self_consistency,
    "ann-gsm8k": ann_gsm8k,
    "moa": moa,
    "debate": debate,
    "chain": chain,
    "star": star,
    "hypergraph-gsm8k": hypergraph_gsm8k,
    "complete": complete,
    "hyperagent-gsm8k": hyperagent_gsm8k,
}
