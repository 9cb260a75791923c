"""REINFORCE for topology learners: the training half of HyperAgent, G-Designer and AgentPrune.

A learner (:mod:`hyperteam.topologies.learned`) is a policy over
communication structures; here it is trained on utility = correct − λ · tokens
with a batch-mean baseline over the M structures sampled per problem, plus
the learner's own regularisers. The learner itself only samples and
decodes, so a team that uses a trained generator never imports this module.

Example:
    >>> from hyperteam.optim.topology import fit  # doctest: +SKIP
    >>> history = fit(gen, problems, reward=my_reward, samples_per_query=10)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.optim.topology.reward import Outcome, Reward, TeamReward

if TYPE_CHECKING:
    from hyperteam.topologies.learned.generator import TopologyLearner

log = logging.getLogger(__name__)


def fit(
    learner: TopologyLearner,
    train_suite: Sequence[Problem],
    *,
    reward: Reward | None = None,
    samples_per_query: int = 10,
    token_penalty: float = 1e-5,
    epochs: int = 1,
    batch: int = 8,
    lr: float = 0.01,
    model: Any = None,
    rounds: int = 3,
    fusion: str | dict[str, Any] = "majority_vote",
    concurrency: int = 32,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Trains by REINFORCE on utility = correct − ``token_penalty`` · tokens.

    Loss per problem: −mean((u − mean u) · log p(topology)) over its M
    samples, plus the learner's regularisers (for the encoded learners:
    KL, nuclear-norm sparsity, anchor penalty, minus an entropy bonus).

    Args:
        train_suite: the training problems.
        reward: judges sampled topologies; default: run a HypergraphTeam of
            these agents on each (``model``, ``rounds``, ``fusion``, ``concurrency``).
        samples_per_query: M hypergraphs sampled per problem; their mean
            utility is the baseline.
        token_penalty: λ, utility lost per token.
        epochs: passes over ``train_suite``.
        batch: problems per update.
        lr: Adam's learning rate.
        on_step: called with each step's record.

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
            record = train_step(learner, chunk, reward, samples_per_query, token_penalty, optimizer)
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
) -> dict[str, Any]:
    """One REINFORCE update on a batch of problems; returns the step's record."""
    started = time.perf_counter()
    draws = [learner._draw(p.question, samples) for p in problems]
    outcomes: list[list[Outcome]] = reward(problems, [d[0] for d in draws])
    loss = torch.zeros(())
    utilities: list[float] = []
    for (_, log_prob, reg), outs in zip(draws, outcomes, strict=True):
        u = torch.tensor([o.correct - token_penalty * o.tokens for o in outs])
        utilities.extend(u.tolist())
        loss = loss - ((u - u.mean()) * log_prob).mean() + reg
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
        "utility": sum(utilities) / len(utilities),
        "accuracy": sum(o.correct for o in flat) / len(flat),
        "tokens_per_query": sum(o.tokens for o in flat) / len(flat),
        "hyperedges_per_query": sum(edges) / len(edges),
        "loss": float(loss.detach()),
        "seconds": round(time.perf_counter() - started, 4),
    }
