"""REINFORCE for topology learners: the training half of HyperAgent, G-Designer and AgentPrune.

A learner (:mod:`hyperteam.topologies.learned`) is a policy over
communication structures; here it is trained on utility = correct − λ · tokens,
plus the learner's own regularisers.

Variance reduction, for 0/1 outcomes: each problem is its own baseline
(M structures sampled per problem, each compared with the mean of the *other*
M − 1: the leave-one-out baseline, unbiased, and it removes how hard the
problem is, which a batch-wide baseline leaves in as noise), and the
advantages of a step are divided by their standard deviation, so that a step
whose samples barely differ moves the policy no more than one whose samples
do (the regularisers keep their weight against a gradient of a known scale).
M defaults to 16: with right/wrong outcomes at a success rate p, the chance
that all M samples of a problem agree (no signal at all) is p^M + (1 − p)^M,
0.7 % at p = 0.7 with 16, 3 % with 10. The learner itself only samples and
decodes, so a team that uses a trained generator never imports this module.

Example:
    >>> from hyperteam.optim.topology import fit  # doctest: +SKIP
    >>> history = fit(gen, problems, reward=my_reward, samples_per_query=10)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.optim.topology.reward import Outcome, Reward, TeamReward

if TYPE_CHECKING:
    from hyperteam.topologies.learned.generator import TopologyLearner

log = logging.getLogger(__name__)

ADVANTAGE_FLOOR = 0.05
"""The least standard deviation advantages are divided by: a step whose samples are all alike
(all right, all wrong) carries little signal and must not be blown up into a full step."""


def _credit(outcome: Outcome, credit: str) -> float:
    if credit == "agents" and outcome.agents_right is not None:
        return outcome.agents_right
    return outcome.correct


def leave_one_out_columns(u: torch.Tensor) -> torch.Tensor:
    """:func:`leave_one_out` down each column of ``(M, N)`` utilities (one column per agent)."""
    m = u.shape[0]
    return (u - u.mean(0, keepdim=True)) * (m / (m - 1)) if m > 1 else torch.zeros_like(u)


def leave_one_out(utilities: Sequence[float]) -> torch.Tensor:
    """Each sample's utility less the mean of the others (RLOO): ``M/(M−1) · (u − mean u)``.

    Example:
        >>> leave_one_out([1.0, 0.0, 0.0]).tolist()
        [1.0, -0.5, -0.5]
    """
    u = torch.tensor(list(utilities), dtype=torch.float32)
    m = len(u)
    return (u - u.mean()) * (m / (m - 1)) if m > 1 else torch.zeros_like(u)


def fit(
    learner: TopologyLearner,
    train_suite: Sequence[Problem],
    *,
    reward: Reward | None = None,
    samples_per_query: int = 16,
    token_penalty: float = 1e-5,
    epochs: int = 1,
    batch: int = 8,
    lr: float = 0.003,
    model: Any = None,
    rounds: int = 3,
    fusion: str | dict[str, Any] = "majority_vote",
    concurrency: int = 32,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    credit: Literal["team", "agents"] = "team",
) -> list[dict[str, Any]]:
    """Trains by REINFORCE on utility = correct − ``token_penalty`` · tokens.

    Loss per problem: −mean(A · log p(topology)) over its M samples, where
    A is the utility less the mean of the problem's other samples, divided by
    the step's standard deviation of A; plus the learner's regularisers (for
    the encoded learners: KL, nuclear-norm sparsity, anchor penalty, an
    entropy floor).

    Args:
        train_suite: the training problems.
        reward: judges sampled topologies; default: run a HypergraphTeam of
            these agents on each (``model``, ``rounds``, ``fusion``, ``concurrency``).
        samples_per_query: M hypergraphs sampled per problem; each one's baseline
            is the mean utility of the other M − 1.
        token_penalty: λ, utility lost per token.
        epochs: passes over ``train_suite``.
        batch: problems per update.
        lr: Adam's learning rate (0.003: at 0.01 the synthetic bench's policies settled on one
            topology for every kind of query).
        on_step: called with each step's record.
        credit: what "correct" is: the team's answer (``team``), or each agent's own last
            answer (``agents``): a learner that can say which choices were each agent's
            (HyperAgent) credits every agent's choices with its own right/wrong, the others
            use the share of agents right; outcomes without per-agent answers fall back to
            the team's. Both are right/wrong feedback; per agent there is one outcome per
            agent instead of one per run, so whom an agent works with shows through the
            noise far sooner.

    Returns:
        One record per step: ``step``, ``utility``, ``accuracy``,
        ``tokens_per_query``, ``hyperedges_per_query``, ``loss``, ``seconds``.
    """
    if samples_per_query < 2:
        raise ConfigError(f"samples_per_query must be >= 2 (the baseline is their mean), got {samples_per_query}")
    if epochs < 1 or batch < 1 or not train_suite:
        raise ConfigError("fit needs epochs >= 1, batch >= 1 and at least one problem")
    if reward is None:
        reward = TeamReward(learner.agents, rounds=rounds, fusion=fusion, model=model, concurrency=concurrency)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=lr)
    history: list[dict[str, Any]] = []
    problems = list(train_suite)
    for _ in range(epochs):
        order = torch.randperm(len(problems), generator=learner._rng).tolist()
        for start in range(0, len(problems), batch):
            chunk = [problems[i] for i in order[start : start + batch]]
            record = train_step(learner, chunk, reward, samples_per_query, token_penalty, optimizer, credit=credit)
            history.append(record)
            if on_step is not None:
                on_step(record)
    return history


def train_step(
    learner: TopologyLearner,
    problems: Sequence[Problem],
    reward: Reward,
    samples: int,
    token_penalty: float,
    optimizer: Any,
    *,
    credit: Literal["team", "agents"] = "team",
) -> dict[str, Any]:
    """One REINFORCE update on a batch of problems; returns the step's record."""
    started = time.perf_counter()
    learner.remember([p.question for p in problems])  # one embedder call per step
    per_agent = credit == "agents" and hasattr(learner, "_draw_agents")
    draws = [(learner._draw_agents if per_agent else learner._draw)(p.question, samples) for p in problems]
    outcomes: list[list[Outcome]] = reward(problems, [d[0] for d in draws])
    utilities = [[_credit(o, credit) - token_penalty * o.tokens for o in outs] for outs in outcomes]
    if per_agent and all(o.agents for outs in outcomes for o in outs):
        # Each agent's choices are credited with its own right/wrong (less the run's tokens): whom
        # an agent works with shows in its own answer far more clearly than in the team's.
        names = learner.names
        own = [
            torch.tensor([[o.agents.get(n, o.correct) - token_penalty * o.tokens for n in names] for o in outs])
            for outs in outcomes
        ]
        advantages = [leave_one_out_columns(u) for u in own]
    else:
        advantages = [leave_one_out(u) for u in utilities]
        draws = [(s, lp.sum(-1) if lp.dim() > 1 else lp, r) for s, lp, r in draws]
    flat = torch.cat([a.reshape(-1) for a in advantages])
    spread = flat.std() if flat.numel() > 1 else torch.zeros(())
    scale = 1.0 / max(float(spread), ADVANTAGE_FLOOR)
    loss = torch.zeros(())
    for (_, log_prob, reg), adv in zip(draws, advantages, strict=True):
        loss = loss - (adv * scale * log_prob).reshape(adv.shape[0], -1).sum(-1).mean() + reg
    loss = loss / len(problems)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    learner.after_step()
    learner.steps += 1
    flat = [o for outs in outcomes for o in outs]
    edges = [len(s) for d in draws for s in d[0]]
    log.debug("%s step %d: loss %.4f over %d problems", learner.learner, learner.steps, loss.item(), len(problems))
    return {
        "step": learner.steps,
        "utility": sum(map(sum, utilities)) / sum(map(len, utilities)),
        "accuracy": sum(o.correct for o in flat) / len(flat),
        "tokens_per_query": sum(o.tokens for o in flat) / len(flat),
        "hyperedges_per_query": sum(edges) / len(edges),
        "loss": float(loss.detach()),
        "seconds": round(time.perf_counter() - started, 4),
    }
