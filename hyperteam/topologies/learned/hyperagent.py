"""HyperAgent's hypergraph generator and the G-Designer baseline: one encoder–decoder, two ways to sample.

Both embed the agents' role texts and the query, run the variational
hypergraph-convolution encoder over the agents and a task node, and decode
pairwise affinities ``S``. HyperAgent samples each agent's partners from
``S`` (hyperedges of up to k + 1 agents); G-Designer samples each pair as an
edge. Regularisers: KL, nuclear-norm sparsity, the anchor penalty, and an
entropy bonus that keeps the policy exploring (without it, training
collapsed within ~100 steps on ``hyperteam bench topology-synthetic``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.topologies.embed import Embedder
from hyperteam.topologies.hypergraph import Hyperedges
from hyperteam.topologies.learned.generator import TopologyLearner, agent_text
from hyperteam.topologies.learned.layers import (
    AffinityDecoder,
    VariationalEncoder,
    affinity_entropy,
    anchor_penalty,
    chain_anchor,
    hyperedges_from,
    input_incidence,
    kl_divergence,
    nuclear_penalty,
    sample_partners,
)

_FILLER = (
    "how many much each per day week total left after buys sells costs dollars apples eggs train miles hours "
    "half twice more less than if she he they has have had what is the of a and"
).split()


class _EncodedLearner(TopologyLearner):
    """The encoder–decoder policy shared by HyperAgent and G-Designer."""

    def __init__(
        self,
        agents: Sequence[Agent | str],
        embedder: Embedder | None = None,
        *,
        seed: int = 0,
        hidden: int = 64,
        rank: int = 16,
        tau: float = 1.0,
        kl_weight: float = 1e-3,
        sparsity_weight: float = 0.1,
        anchor_weight: float = 1e-2,
        entropy_weight: float = 0.2,
    ) -> None:
        super().__init__(agents, embedder, seed=seed)
        self.hparams = {
            "hidden": hidden,
            "rank": rank,
            "tau": tau,
            "kl_weight": kl_weight,
            "sparsity_weight": sparsity_weight,
            "anchor_weight": anchor_weight,
            "entropy_weight": entropy_weight,
        }  # fmt: skip
        self.encoder = VariationalEncoder(self.embedder.dim, hidden)
        self.decoder = AffinityDecoder(hidden, rank=rank, tau=tau)
        self.register_buffer("incidence", input_incidence(self.n))
        self.register_buffer("anchor", chain_anchor(self.n))

    def config(self) -> dict[str, Any]:
        return dict(self.hparams)

    def anchor_init(self, steps: int = 200, *, lr: float = 0.003) -> TopologyLearner:
        """Fits the affinities to the anchor chain alone (no reward), deterministically; returns self.

        An untrained decoder gives every pair an affinity near 0.5, so its
        ``best`` hypergraph is arbitrary; after this warm start it is the
        anchor's: each agent with its chain neighbours, for any query. The
        targets are 0.9 and 0.1, not 1 and 0, so that sampling still explores.
        """
        # Random word salads stand in for queries, so the fit holds for queries never seen.
        words = " ".join(agent_text(a) for a in self.agents).split() + _FILLER
        rng = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        for _ in range(steps):
            picks = torch.randint(len(words), (12,), generator=rng).tolist()
            s, _ = self._policy(" ".join(words[i] for i in picks), 0)
            loss = anchor_penalty(s, 0.1 + 0.8 * self.anchor)  # soft targets: sampling still explores
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return self

    def _policy(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits, reg = self._policy_logits(query, samples)
        return torch.sigmoid(logits), reg

    def _policy_logits(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(``logit(S)``, regulariser): the policy before the sigmoid."""
        task = torch.tensor(self.embedder.embed([query]))
        # Unit-norm embeddings have entries near 1/sqrt(dim); scaled to about 1 each, the
        # convolutions' outputs are not vanishingly small at initialisation.
        x = torch.cat([self.agent_features, task], dim=0) * self.embedder.dim**0.5
        mu, log_sigma = self.encoder(x, self.incidence)
        if samples:
            eps = torch.randn((samples, *mu.shape), generator=self._rng)
            z = mu + torch.exp(log_sigma) * eps
        else:
            z = mu.unsqueeze(0)
        logits = self.decoder.logits(z)
        s = torch.sigmoid(logits)
        h = self.hparams
        reg = (
            h["kl_weight"] * kl_divergence(mu, log_sigma)
            + h["sparsity_weight"] * nuclear_penalty(s)
            + h["anchor_weight"] * anchor_penalty(s, self.anchor)
            - h["entropy_weight"] * affinity_entropy(s)
        )
        return logits, reg


class HypergraphGenerator(_EncodedLearner):
    """HyperAgent's generator: a task-adaptive sparse hypergraph per query.

    From the decoder's affinities ``S``, each agent draws up to ``k``
    partners one at a time (softmax over ``logit(S_ij)`` and a stop option
    with logit 0, see :func:`~hyperteam.topologies.learned.layers.sample_partners`);
    its hyperedge is itself plus its partners, and identical hyperedges are
    merged. ``best`` takes, from the mean latent, each agent's top-``k``
    partners with ``S_ij > 0.5``: the most likely draw.

    Args:
        agents: the team's agents (or names).
        embedder: embeds role texts and queries; default :class:`HashingEmbedder`.
        k: partners per agent at most (default 2).
        seed: initialisation and sampling seed (an untrained generator with a
            fixed seed is deterministic).

    Example:
        >>> gen = HypergraphGenerator(["a", "b", "c", "d"], k=2, seed=0)
        >>> history = ht.optim.topology.fit(gen, problems, reward=my_reward, samples_per_query=10)  # doctest: +SKIP
        >>> gen.best("How many eggs ...?")  # doctest: +SKIP
        [['a', 'b', 'c'], ['c', 'd']]
    """

    learner = "hyperagent"

    def __init__(self, agents: Sequence[Agent | str], embedder: Embedder | None = None, *, k: int = 2, **kw: Any):
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        super().__init__(agents, embedder, **kw)
        self.k = k

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}

    def _mask(self) -> torch.Tensor:
        return 1.0 - torch.eye(self.n)

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        return hyperedges_from((chosen > 0.5).tolist(), scores.tolist(), self.k)

    def _draw(self, query: str, samples: int) -> tuple[list[Hyperedges], torch.Tensor, torch.Tensor]:
        logits, reg = self._policy_logits(query, samples)
        picks, log_prob = sample_partners(logits, self.k, self._rng)
        probs = torch.sigmoid(logits.detach())
        return [self._names(self._structure(c, p)) for c, p in zip(picks, probs, strict=True)], log_prob, reg


class GDesignerGenerator(_EncodedLearner):
    """The G-Designer-style baseline: the same encoder and decoder, pairwise edges.

    Each undirected pair (i, j) is an edge with probability ``S_ij``; every
    edge becomes a 2-member hyperedge.

    Example:
        >>> gen = GDesignerGenerator(["a", "b", "c"], seed=0)
        >>> all(len(e) == 2 for e in gen.sample("a question"))
        True
    """

    learner = "gdesigner"

    def __init__(self, agents: Sequence[Agent | str], embedder: Embedder | None = None, **kw: Any) -> None:
        # Bernoulli edges are not capped at k partners: it takes more sparsity pressure
        # (tuned on the same grid, 0.01 / 0.1 / 0.3, as HyperAgent's 0.1; bench/README.md).
        kw.setdefault("sparsity_weight", 0.3)
        super().__init__(agents, embedder, **kw)

    def _mask(self) -> torch.Tensor:
        return torch.triu(torch.ones(self.n, self.n), diagonal=1)

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        n = self.n
        return [(i, j) for i in range(n) for j in range(i + 1, n) if chosen[i, j] > 0.5]
