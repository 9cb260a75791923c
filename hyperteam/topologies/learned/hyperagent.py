"""HyperAgent's hypergraph generator and the G-Designer baseline: one VAE and decoder, two encoders, two samplers.

Both embed the agents' role texts and the query, encode the agents and a task
node with a variational encoder, and decode pairwise affinities ``S``.
HyperAgent encodes with hypergraph convolutions and gives each agent its
top-k partners (its hyperedge is itself plus them) unless a learned "work
alone" beats its best partner by a margin; G-Designer encodes with pairwise
graph convolutions (a GCN over the anchor chain and the task node) and
samples each pair as an edge.

Regularisers (KL, nuclear-norm sparsity, the anchor penalty) all have their
minimum at or next to the anchor warm start (affinity 0.7 for chain
neighbours, 0.3 for the rest, see :meth:`_EncodedLearner.anchor_init`), so
with no advantage to follow, training leaves the warm-start topology as it
is instead of eroding it (an entropy bonus toward 0.5 and a penalty toward a
hard 0/1 anchor used to settle every affinity near 0.33: empty topologies).
Exploration comes from the soft warm start itself, and an entropy *floor*
(a penalty only when the policy's entropy falls under it) keeps sampling
from collapsing.

Added to the paper's decoder (HyperAgent only): a query-conditioned bilinear
pair term (:class:`~hyperteam.topologies.learned.layers.QueryBilinear`) on
the raw embeddings, added to every pair's logit, initialised to zero and left
out of the warm start. The convolutions average the task node with the agents,
so the query reaches the decoder diluted; the term gives it a direct path. At
zero it changes nothing (``relevance_rank=0`` removes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.topologies.embed import Embedder
from hyperteam.topologies.hypergraph import Hyperedges
from hyperteam.topologies.learned.generator import TopologyLearner, agent_text
from hyperteam.topologies.learned.layers import (
    AffinityDecoder,
    QueryBilinear,
    VariationalEncoder,
    VariationalGraphEncoder,
    anchor_penalty,
    bernoulli_log_prob,
    chain_anchor,
    graph_adjacency,
    hyperedges_from,
    input_incidence,
    kl_divergence,
    nuclear_penalty,
    sample_top_k,
    top_k_choice,
)

_FILLER = (
    "how many much each per day week total left after buys sells costs dollars apples eggs train miles hours "
    "half twice more less than if she he they has have had what is the of a and"
).split()


ANCHOR_HIGH, ANCHOR_LOW = 0.7, 0.3
"""The warm start's affinities: chain neighbours, everyone else. Soft, so that sampling explores."""
GATE_INIT = (0.1, 0.5)
"""The warm start's gates as probabilities, before the margin: "work alone" (then 0.04), "another partner" (0.73)."""


class _EncodedLearner(TopologyLearner):
    """The encoder–decoder policy shared by HyperAgent and G-Designer; subclasses give the encoder."""

    gated = False
    """Whether the decoder also gives each agent "work alone" and "another partner" gates."""

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
        sparsity_weight: float = 0.01,
        anchor_weight: float = 0.1,
        entropy_weight: float = 3.0,
        entropy_floor: float = 0.2,
        relevance_rank: int = 0,
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
            "entropy_floor": entropy_floor,
            "relevance_rank": relevance_rank,
        }  # fmt: skip
        self.encoder = self._encoder(self.embedder.dim, hidden)
        self.decoder = AffinityDecoder(hidden, rank=rank, tau=tau, gates=self.gated)
        self.relevance = QueryBilinear(self.embedder.dim, relevance_rank) if relevance_rank > 0 else None
        self.register_buffer("anchor", chain_anchor(self.n))

    def _encoder(self, features: int, hidden: int) -> torch.nn.Module:
        raise NotImplementedError

    def _structure_input(self) -> torch.Tensor:
        """What the encoder convolves over: an incidence matrix or a normalised adjacency."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return dict(self.hparams)

    def anchor_target(self) -> torch.Tensor:
        """The warm start's affinities: 0.7 between chain neighbours, 0.3 elsewhere."""
        return ANCHOR_LOW + (ANCHOR_HIGH - ANCHOR_LOW) * self.anchor

    def anchor_init(self, steps: int = 200, *, lr: float = 0.003) -> TopologyLearner:
        """Fits the affinities to the anchor chain alone (no reward), deterministically; returns self.

        An untrained decoder gives every pair an affinity near 0.5, so its
        ``best`` hypergraph is arbitrary; after this warm start it is the
        anchor's: each agent with its chain neighbours, for any query. The
        targets are 0.7 and 0.3 (the "work alone" score too is fitted to 0.3),
        not 1 and 0, so that sampling still explores.
        """
        # Random word salads stand in for queries, so the fit holds for queries never seen.
        words = " ".join(agent_text(a) for a in self.agents).split() + _FILLER
        rng = torch.Generator().manual_seed(self.seed)
        # The query term stays at zero: fitted to query-independent salads it could only learn noise.
        fixed = {id(p) for p in self.relevance.parameters()} if self.relevance is not None else set()
        optimizer = torch.optim.Adam([p for p in self.parameters() if id(p) not in fixed], lr=lr)
        target = self.anchor_target()
        salads = [
            " ".join(words[i] for i in torch.randint(len(words), (12,), generator=rng).tolist()) for _ in range(steps)
        ]
        self.remember(salads)  # one batch for the embedder: a real model embeds 200 texts at once far faster
        for salad in salads:
            z, _, _ = self._latent(salad, 0)
            s = torch.sigmoid(self._logits(z, salad))
            loss = anchor_penalty(s, target)
            if self.gated:
                alone, more = self.decoder.gate_logits(z)
                gates = (torch.sigmoid(alone) - GATE_INIT[0]).pow(2) + (torch.sigmoid(more) - GATE_INIT[1]).pow(2)
                loss = loss + gates.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return self

    def _latent(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(``Z`` ``(max(samples, 1), N + 1, hidden)``, μ, log σ); ``samples=0`` gives μ."""
        task = self.query_vector(query)
        # Unit-norm embeddings have entries near 1/sqrt(dim); scaled to about 1 each, the
        # convolutions' outputs are not vanishingly small at initialisation.
        x = torch.cat([self.agent_features, task], dim=0) * self.embedder.dim**0.5
        mu, log_sigma = self.encoder(x, self._structure_input())
        if samples:
            eps = torch.randn((samples, *mu.shape), generator=self._rng)
            return mu + torch.exp(log_sigma) * eps, mu, log_sigma
        return mu.unsqueeze(0), mu, log_sigma

    def _query_term(self, query: str) -> torch.Tensor | float:
        """The query's pair term added to the decoder's logits (symmetric, zero until trained)."""
        if self.relevance is None:
            return 0.0
        scale = self.embedder.dim**0.5
        return self.relevance(self.agent_features * scale, self.query_vector(query) * scale)

    def _logits(self, z: torch.Tensor, query: str) -> torch.Tensor:
        """The decoder's affinity logits for latent ``z`` plus the query term (the diagonal stays -inf)."""
        return self.decoder.logits(z) + self._query_term(query)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """As torch's, except that weights saved without the query term load with it at zero."""
        state = dict(state_dict)
        for key, value in self.state_dict().items():
            if key.startswith("relevance.") and key not in state:
                state[key] = torch.zeros_like(value) if key.startswith("relevance.query.") else value
        return super().load_state_dict(state, strict=strict, assign=assign)

    def _regulariser(self, mu: torch.Tensor, log_sigma: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        return (
            h["kl_weight"] * kl_divergence(mu, log_sigma)
            + h["sparsity_weight"] * nuclear_penalty(s)
            + h["anchor_weight"] * anchor_penalty(s, self.anchor_target())
        )

    def _entropy_floor(self, entropy: torch.Tensor) -> torch.Tensor:
        """Zero for every decision whose entropy is above the floor: it does not move a policy that
        explores, and it keeps each decision from turning deterministic (a policy sure of every
        choice samples only itself and cannot leave a local optimum)."""
        h = self.hparams
        return h["entropy_weight"] * torch.relu(h["entropy_floor"] - entropy).mean()

    def _policy(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        z, mu, log_sigma = self._latent(query, samples)
        logits = self.decoder.logits(z)
        base = torch.sigmoid(logits)
        s = base if self.relevance is None else torch.sigmoid(logits + self._query_term(query))
        # The regularisers are the paper's, on its decoder: on the query term they would pull it toward
        # the warm start too, and drift it with no reward to follow.
        return s, self._regulariser(mu, log_sigma, base)


class HypergraphGenerator(_EncodedLearner):
    """HyperAgent's generator: a task-adaptive sparse hypergraph per query.

    A hypergraph-convolution VAE encodes the agents and the query; the
    decoder gives pairwise affinities ``S`` and a "work alone" score per
    agent. Each agent's hyperedge is itself plus its top-``k`` partners by
    affinity (identical hyperedges merged), as in the paper; an agent works
    alone only where its "alone" logit beats its best partner's by more than
    ``alone_margin``. Training samples the k partners without replacement
    (see :func:`~hyperteam.topologies.learned.layers.sample_top_k`); ``best``
    takes the most likely draw from the mean latent, so a topology is empty
    only if every agent's "alone" won by the margin.

    Args:
        agents: the team's agents (or names).
        embedder: embeds role texts and queries; default :class:`HashingEmbedder`.
        k: partners per agent (default 2).
        alone_margin: logits by which "work alone" must beat the best partner
            (default 1.0; ``inf`` never works alone).
        seed: initialisation and sampling seed (an untrained generator with a
            fixed seed is deterministic).
        **kw: the encoder's and regularisers' settings, saved with the topology:
            ``hidden`` (64), ``rank`` (16), ``tau`` (1.0), ``kl_weight`` (1e-3),
            ``sparsity_weight`` (0.01), ``anchor_weight`` (0.1, toward the warm
            start), ``entropy_weight`` (3.0), ``entropy_floor`` (0.2 nats per decision) and
            ``relevance_rank`` (16, the query term's rank: at least N(N − 1)/2 lets it express any
            pair matrix; 0 for the paper's decoder alone).

    Example:
        >>> gen = HypergraphGenerator(["a", "b", "c", "d"], k=2, seed=0).anchor_init()
        >>> history = ht.optim.topology.fit(gen, problems, reward=my_reward, samples_per_query=16)  # doctest: +SKIP
        >>> gen.best("How many eggs ...?")  # doctest: +SKIP
        [['a', 'b', 'c'], ['b', 'c', 'd']]
    """

    learner = "hyperagent"
    gated = True

    def __init__(
        self,
        agents: Sequence[Agent | str],
        embedder: Embedder | None = None,
        *,
        k: int = 2,
        alone_margin: float = 1.0,
        relevance_rank: int = 16,
        **kw: Any,
    ):
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if not alone_margin >= 0:
            raise ConfigError(f"alone_margin must be >= 0, got {alone_margin}")
        super().__init__(agents, embedder, relevance_rank=relevance_rank, **kw)
        self.register_buffer("incidence", input_incidence(self.n))
        self.k = k
        self.alone_margin = float(alone_margin)

    def _encoder(self, features: int, hidden: int) -> torch.nn.Module:
        return VariationalEncoder(features, hidden)

    def _structure_input(self) -> torch.Tensor:
        return self.incidence

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k, "alone_margin": self.alone_margin}

    def _mask(self) -> torch.Tensor:
        return 1.0 - torch.eye(self.n)

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        return hyperedges_from((chosen > 0.5).tolist(), scores.tolist(), self.k)

    def _choice(self, query: str) -> tuple[torch.Tensor, torch.Tensor]:
        z, _, _ = self._latent(query, 0)
        logits = self._logits(z, query)[0]
        alone, more = self.decoder.gate_logits(z)
        return top_k_choice(logits, alone[0], more[0], self.k, margin=self.alone_margin), logits

    def best(self, query: str) -> Hyperedges:
        """Each agent with its top-``k`` partners (from the mean latent), unless it works alone."""
        with torch.no_grad():
            chosen, logits = self._choice(query)
            return self._names(self._structure(chosen, logits))

    def working_alone(self, query: str) -> list[str]:
        """The agents whose "work alone" beat their best partner by the margin for ``query``."""
        with torch.no_grad():
            chosen, _ = self._choice(query)
        return [name for name, row in zip(self.names, chosen.sum(-1).tolist(), strict=True) if row == 0]

    def _draw(self, query: str, samples: int) -> tuple[list[Hyperedges], torch.Tensor, torch.Tensor]:
        structures, log_prob, reg = self._draw_agents(query, samples)
        return structures, log_prob.sum(-1), reg

    def _draw_agents(self, query: str, samples: int) -> tuple[list[Hyperedges], torch.Tensor, torch.Tensor]:
        """Like ``_draw``, with each agent's log-probability of its own choices, ``(M, N)``: each
        agent's decisions can then be credited with its own outcome."""
        z, mu, log_sigma = self._latent(query, samples)
        base = self.decoder.logits(z)
        logits = base + self._query_term(query)
        alone, more = self.decoder.gate_logits(z)
        picks, log_prob, entropy = sample_top_k(
            logits, alone, more, self.k, margin=self.alone_margin, generator=self._rng
        )
        reg = self._regulariser(mu, log_sigma, torch.sigmoid(base)) + self._entropy_floor(entropy)
        scores = logits.detach()
        return [self._names(self._structure(c, p)) for c, p in zip(picks, scores, strict=True)], log_prob, reg


class GDesignerGenerator(_EncodedLearner):
    """The G-Designer baseline: a variational *graph* auto-encoder (GCN) and pairwise edges.

    The encoder is two stacks of pairwise graph convolutions over the anchor
    chain, with the task node linked to every agent (G-Designer's task-specific
    virtual node); the decoder is shared with HyperAgent. Each undirected pair
    (i, j) is an edge with probability ``S_ij``; every edge becomes a 2-member
    hyperedge; ``best`` keeps the pairs with ``S_ij > 0.5``.

    Example:
        >>> gen = GDesignerGenerator(["a", "b", "c"], seed=0)
        >>> all(len(e) == 2 for e in gen.sample("a question"))
        True
    """

    learner = "gdesigner"

    def __init__(self, agents: Sequence[Agent | str], embedder: Embedder | None = None, **kw: Any) -> None:
        super().__init__(agents, embedder, **kw)
        self.register_buffer("adjacency", graph_adjacency(self.n))

    def _encoder(self, features: int, hidden: int) -> torch.nn.Module:
        return VariationalGraphEncoder(features, hidden)

    def _structure_input(self) -> torch.Tensor:
        return self.adjacency

    def _mask(self) -> torch.Tensor:
        return torch.triu(torch.ones(self.n, self.n), diagonal=1)

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        n = self.n
        return [(i, j) for i in range(n) for j in range(i + 1, n) if chosen[i, j] > 0.5]

    def _draw(self, query: str, samples: int) -> tuple[list[Hyperedges], torch.Tensor, torch.Tensor]:
        probs, reg = self._policy(query, samples)
        mask = self._mask()
        chosen = (torch.rand(probs.shape, generator=self._rng) < probs.detach()).float() * mask
        log_prob = bernoulli_log_prob(chosen, probs, mask)
        p = probs[..., mask > 0].clamp(1e-6, 1 - 1e-6)
        reg = reg + self._entropy_floor(-(p * torch.log(p) + (1 - p) * torch.log1p(-p)))
        return [self._names(self._structure(c, p)) for c, p in zip(chosen, probs.detach(), strict=True)], log_prob, reg
