"""The AgentPrune-style baseline: a free probability per edge, the weakest pruned now and then.

Spatial masks only. AgentPrune (Zhang et al. 2024) learns a spatial mask
(who reads whom within a round) and a temporal one (who reads whom from the
round before); a hypergraph team runs one communication structure in every
round, its agents reading their co-members' latest outputs, so there is one
mask here, applied to both. A separate temporal mask needs a team that runs
different structures within and across rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.topologies.embed import Embedder
from hyperteam.topologies.learned.generator import TopologyLearner
from hyperteam.topologies.learned.layers import affinity_entropy, nuclear_penalty


class AgentPruneGenerator(TopologyLearner):
    """One learned logit per undirected agent pair, the same for every query; pruning removes edges for good.

    Every ``prune_every`` updates, the ``prune_fraction`` of still-live edges
    with the lowest probability are pruned (probability 0 from then on), until
    at most ``max_pruned`` of all edges are gone. The query is not looked at:
    this is the query-independent baseline.

    Args:
        agents: the team's agents (or names).
        embedder: unused by the policy; kept so that every learner saves alike.
        prune_every: updates between prunings.
        prune_fraction: share of the live edges pruned each time.
        max_pruned: share of all edges that may be pruned in total.
        sparsity_weight: weight of the nuclear-norm penalty on the edge probabilities.
        entropy_weight: weight of the exploration bonus (the probabilities' entropy).

    Example:
        >>> gen = AgentPruneGenerator(["a", "b", "c"], seed=0)
        >>> sorted(len(e) for e in gen.best("any question"))
        []
    """

    learner = "agentprune"

    def __init__(
        self,
        agents: Sequence[Agent | str],
        embedder: Embedder | None = None,
        *,
        seed: int = 0,
        prune_every: int = 20,
        prune_fraction: float = 0.1,
        max_pruned: float = 0.5,
        sparsity_weight: float = 0.3,
        entropy_weight: float = 0.2,
    ) -> None:
        if prune_every < 1 or not 0 <= prune_fraction <= 1 or not 0 <= max_pruned <= 1:
            raise ConfigError("prune_every must be >= 1; prune_fraction and max_pruned must lie in [0, 1]")
        super().__init__(agents, embedder, seed=seed)
        self.prune_every = prune_every
        self.prune_fraction = prune_fraction
        self.max_pruned = max_pruned
        self.sparsity_weight = sparsity_weight
        self.entropy_weight = entropy_weight
        self.logits = torch.nn.Parameter(torch.zeros(self.n, self.n))
        self.register_buffer("live", torch.triu(torch.ones(self.n, self.n), diagonal=1))

    def config(self) -> dict[str, Any]:
        return {
            "prune_every": self.prune_every, "prune_fraction": self.prune_fraction, "max_pruned": self.max_pruned,
            "sparsity_weight": self.sparsity_weight, "entropy_weight": self.entropy_weight,
        }  # fmt: skip

    def _policy(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.sigmoid(self.logits) * self.live
        sym = probs + probs.T  # the penalties see the symmetric affinity matrix, as the encoded learners' do
        reg = self.sparsity_weight * nuclear_penalty(sym) - self.entropy_weight * affinity_entropy(sym)
        return probs.unsqueeze(0).expand(max(samples, 1), self.n, self.n), reg

    def _mask(self) -> torch.Tensor:
        return self.live

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        n = self.n
        return [(i, j) for i in range(n) for j in range(i + 1, n) if chosen[i, j] > 0.5]

    def after_step(self) -> None:
        if (self.steps + 1) % self.prune_every:
            return
        total = self.n * (self.n - 1) // 2
        live = int(self.live.sum())
        budget = int(self.max_pruned * total) - (total - live)
        count = min(budget, max(1, int(self.prune_fraction * live)))
        if count <= 0:
            return
        with torch.no_grad():
            scores = torch.where(self.live > 0, self.logits, torch.full_like(self.logits, float("inf")))
            weakest = torch.topk(scores.reshape(-1), count, largest=False).indices
            self.live.view(-1)[weakest] = 0.0

    @property
    def pruned(self) -> int:
        """Edges pruned so far."""
        return self.n * (self.n - 1) // 2 - int(self.live.sum())
