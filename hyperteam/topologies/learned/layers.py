"""The torch pieces of HyperAgent's generator, written out densely (N is a handful of agents).

- :func:`hypergraph_conv`: ``D_v^{-1/2} H W D_e^{-1} Hᵀ D_v^{-1/2} X Θ`` (the activation σ is the layer's).
- :class:`VariationalEncoder`: two convolution stacks giving μ and log σ; ``Z = μ + σ ⊙ ε``.
- :class:`AffinityDecoder`: ``S = sigmoid(FFN([z_i ‖ z_j ‖ z_task]) / τ)`` plus a rank-r factor term.
- :class:`QueryBilinear`: a zero-initialised query-conditioned pair term added to the affinities' logits.
- penalties: :func:`nuclear_penalty` (sparsity, low rank) and :func:`anchor_penalty` (toward a chain).
- :class:`VariationalGraphEncoder`: the same VAE with pairwise graph convolutions (G-Designer's GCN).
- :func:`hyperedges_from`: each agent plus its top-k invited partners, duplicates merged.
- :func:`sample_top_k` / :func:`top_k_choice`: each agent's k partners (or working alone), sampled / greedy.
- :func:`bernoulli_log_prob`: the log-probability of a sampled invitation matrix.

Node order everywhere: the N agents, then the task (query) node last.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "AffinityDecoder",
    "GraphConv",
    "HypergraphConv",
    "QueryBilinear",
    "VariationalEncoder",
    "VariationalGraphEncoder",
    "affinity_entropy",
    "anchor_penalty",
    "bernoulli_log_prob",
    "chain_anchor",
    "graph_adjacency",
    "hyperedges_from",
    "hypergraph_conv",
    "input_incidence",
    "kl_divergence",
    "nuclear_penalty",
    "sample_top_k",
    "top_k_choice",
]


def hypergraph_conv(
    x: torch.Tensor, incidence: torch.Tensor, theta: torch.Tensor, edge_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """One hypergraph convolution before its activation: ``D_v^{-1/2} H W D_e^{-1} Hᵀ D_v^{-1/2} X Θ``.

    Args:
        x: node features, ``(..., V, F)``.
        incidence: ``H``, ``(V, E)``, 1 where node v is in hyperedge e.
        theta: ``Θ``, ``(F, F')``.
        edge_weight: ``diag(W)``, ``(E,)``; default all ones.

    Nodes in no hyperedge (degree 0) and empty hyperedges contribute nothing
    instead of dividing by zero.
    """
    h = incidence.to(x.dtype)
    w = torch.ones(h.shape[1], dtype=x.dtype, device=x.device) if edge_weight is None else edge_weight.to(x.dtype)
    dv = h @ w
    de = h.sum(0)
    dv_inv_sqrt = torch.where(dv > 0, dv.clamp_min(1e-12).rsqrt(), torch.zeros_like(dv))
    de_inv = torch.where(de > 0, 1.0 / de.clamp_min(1e-12), torch.zeros_like(de))
    propagate = (dv_inv_sqrt[:, None] * h * (w * de_inv)[None, :]) @ (h.T * dv_inv_sqrt[None, :])
    return propagate @ (x @ theta)


class HypergraphConv(nn.Module):
    """``σ(D_v^{-1/2} H W D_e^{-1} Hᵀ D_v^{-1/2} X Θ)`` with a learned ``Θ`` (no bias, as in the formula).

    Example:
        >>> conv = HypergraphConv(4, 3)
        >>> conv(torch.randn(5, 4), torch.ones(5, 1)).shape
        torch.Size([5, 3])
    """

    def __init__(self, in_features: int, out_features: int, *, activation: bool = True) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.theta)
        self.activation = activation

    def forward(self, x: torch.Tensor, incidence: torch.Tensor) -> torch.Tensor:
        out = hypergraph_conv(x, incidence, self.theta)
        return torch.relu(out) if self.activation else out


class VariationalEncoder(nn.Module):
    """Two stacks of two convolutions (hidden 64): one gives μ, the other log σ."""

    LOG_SIGMA_SHIFT = -3.0

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.mu = nn.ModuleList([HypergraphConv(in_features, hidden), HypergraphConv(hidden, hidden, activation=False)])
        self.log_sigma = nn.ModuleList(
            [HypergraphConv(in_features, hidden), HypergraphConv(hidden, hidden, activation=False)]
        )

    def forward(self, x: torch.Tensor, incidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = x, x
        for layer in self.mu:
            mu = layer(mu, incidence)
        for layer in self.log_sigma:
            log_sigma = layer(log_sigma, incidence)
        # Shifted so that σ starts near e^-3: at σ ≈ 1 the samples would be noise around μ's small values.
        return mu, (log_sigma + self.LOG_SIGMA_SHIFT).clamp(-8.0, 2.0)


def graph_adjacency(n: int) -> torch.Tensor:
    """G-Designer's input graph over N agents and the task node, normalised as in a GCN.

    ``D^{-1/2} (A + I) D^{-1/2}`` where ``A`` is the anchor chain between
    agents plus an edge from the task node to every agent.
    """
    a = torch.zeros(n + 1, n + 1)
    a[:n, :n] = chain_anchor(n)
    a[:n, n] = a[n, :n] = 1.0
    a = a + torch.eye(n + 1)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class GraphConv(nn.Module):
    """A pairwise graph convolution ``σ(Â X Θ)`` (Kipf and Welling), ``Â`` normalised with self-loops."""

    def __init__(self, in_features: int, out_features: int, *, activation: bool = True) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.theta)
        self.activation = activation

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        out = adjacency @ (x @ self.theta)
        return torch.relu(out) if self.activation else out


class VariationalGraphEncoder(VariationalEncoder):
    """G-Designer's variational graph auto-encoder: two GCN stacks give μ and log σ over a pairwise graph."""

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        nn.Module.__init__(self)
        self.mu = nn.ModuleList([GraphConv(in_features, hidden), GraphConv(hidden, hidden, activation=False)])
        self.log_sigma = nn.ModuleList([GraphConv(in_features, hidden), GraphConv(hidden, hidden, activation=False)])


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)), averaged over nodes and dimensions."""
    return -0.5 * torch.mean(1 + 2 * log_sigma - mu.pow(2) - torch.exp(2 * log_sigma))


class AffinityDecoder(nn.Module):
    """Pairwise affinities ``S_ij = sigmoid((FFN([z_i ‖ z_j ‖ z_task]) + u_i·u_j) / τ)``, symmetric, zero diagonal.

    ``u_i = U z_i`` is a rank-``rank`` factor (r = 16): the shared low-rank
    structure that the nuclear-norm penalty keeps small.
    """

    def __init__(self, hidden: int = 64, *, rank: int = 16, tau: float = 1.0, gates: bool = False) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        # Two gates per agent from [z_i ‖ z_task]: "work alone", and "take another partner" after the first.
        self.gates = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)) if gates else None
        self.factor = nn.Linear(hidden, rank, bias=False)
        self.rank = rank
        self.tau = tau

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: ``(..., N + 1, hidden)``, task node last. Returns ``S``: ``(..., N, N)``."""
        return torch.sigmoid(self.logits(z))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``logit(S)``: the scaled pre-sigmoid affinities, ``-inf`` on the diagonal."""
        agents, task = z[..., :-1, :], z[..., -1:, :]
        n = agents.shape[-2]
        zi = agents.unsqueeze(-2).expand(*agents.shape[:-2], n, n, agents.shape[-1])
        zj = agents.unsqueeze(-3).expand_as(zi)
        zt = task.unsqueeze(-2).expand_as(zi)
        logits = self.ffn(torch.cat([zi, zj, zt], dim=-1)).squeeze(-1)
        u = self.factor(agents) / self.rank**0.5
        logits = logits + u @ u.transpose(-1, -2)
        logits = (logits + logits.transpose(-1, -2)) / 2
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        return (logits / self.tau).masked_fill(eye, float("-inf"))

    def gate_logits(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each agent's "work alone" and "take another partner" logits, ``(..., N)`` each."""
        if self.gates is None:
            raise RuntimeError("this decoder was built without gates")
        agents, task = z[..., :-1, :], z[..., -1:, :]
        g = self.gates(torch.cat([agents, task.expand_as(agents)], dim=-1)) / self.tau
        return g[..., 0], g[..., 1]


class QueryBilinear(nn.Module):
    """A query-conditioned pair term: ``T_ij = (P e_i)·diag(B q + b)·(P e_j) · g / r``.

    ``e_i`` is agent i's raw embedding and ``q`` the query's (both before the
    convolutions), ``P`` a fixed random projection to ``r`` dimensions (a
    buffer: with r ≥ N(N − 1)/2 its pair features ``P e_i ⊙ P e_j`` are
    independent, so ``B q + b`` can express any symmetric pair matrix), ``B``
    and ``b`` learned, ``g`` a fixed gain (2: at 1 the term learned the
    topology world's per-category structure too slowly, at 4 it cost the
    synthetic bench a few points). ``B`` and ``b`` start at zero, so the term
    is zero until training moves it: a warm start, or a trained file without
    it, decodes exactly as before, and ``B`` has a gradient from the first
    step (two learned factors would both start dead).

    Why: after two hypergraph convolutions the task node is averaged with every
    agent (the input hypergraph joins them all in one hyperedge), so what one
    query has and another lacks reaches the decoder diluted. This skip gives the
    pairwise logits the query itself.

    Example:
        >>> rel = QueryBilinear(8, rank=4)
        >>> rel(torch.randn(3, 8), torch.randn(1, 8)).abs().sum().item()
        0.0
    """

    GAIN = 2.0

    def __init__(self, features: int, rank: int = 16) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(rank, features) / features**0.5)
        self.query = nn.Linear(features, rank)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        self.rank = rank

    def forward(self, agents: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """``agents`` ``(N, F)``, ``query`` ``(1, F)``: the pair term, ``(N, N)``, symmetric."""
        u = agents @ self.projection.T
        return (u * self.query(query)) @ u.T * (self.GAIN / self.rank)


def nuclear_penalty(s: torch.Tensor) -> torch.Tensor:
    """The nuclear norm of each affinity matrix divided by N, averaged over the batch."""
    return torch.linalg.matrix_norm(s, ord="nuc").mean() / s.shape[-1]


def affinity_entropy(s: torch.Tensor) -> torch.Tensor:
    """Mean Bernoulli entropy of the off-diagonal affinities: high while the generator still explores."""
    n = s.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    p = s[..., off].clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log(p) + (1 - p) * torch.log1p(-p)).mean()


def chain_anchor(n: int) -> torch.Tensor:
    """The anchor: the chain of adjacent agents (``A[i, i+1] = A[i+1, i] = 1``)."""
    a = torch.zeros(n, n)
    idx = torch.arange(n - 1)
    a[idx, idx + 1] = 1.0
    a[idx + 1, idx] = 1.0
    return a


def anchor_penalty(s: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the affinities from the anchor, off the diagonal."""
    n = s.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    return (s - anchor.to(s.dtype)).pow(2)[..., off].mean()


def input_incidence(n: int) -> torch.Tensor:
    """The encoder's input hypergraph over N agents and the task node: a self-loop per node
    (as in HGNN, so a node keeps its own features), the anchor chain's pairs, and one
    hyperedge holding every agent and the task."""
    pairs = max(n - 1, 0)
    h = torch.zeros(n + 1, (n + 1) + pairs + 1)
    h[:, : n + 1] = torch.eye(n + 1)
    for e in range(pairs):
        h[e, n + 1 + e] = h[e + 1, n + 1 + e] = 1.0
    h[:, -1] = 1.0
    return h


def bernoulli_log_prob(sample: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probability of 0/1 ``sample`` under independent Bernoullis ``probs``, summed over ``mask``."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    ll = sample * torch.log(p) + (1 - sample) * torch.log1p(-p)
    return (ll * mask.to(ll.dtype)).sum(dim=(-1, -2))


def hyperedges_from(invites: list[list[bool]], scores: list[list[float]], k: int) -> list[tuple[int, ...]]:
    """Each agent plus its top-``k`` invited partners (by score), duplicates merged, in agent order.

    An agent that invites no one forms no hyperedge of its own (it may still be
    in others').

    Example:
        >>> yes = [[False, True, True], [True, False, True], [True, True, False]]
        >>> hyperedges_from(yes, [[0, .9, .8], [.9, 0, .7], [.8, .7, 0]], k=2)
        [(0, 1, 2)]
    """
    edges: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    for i, row in enumerate(invites):
        partners = sorted((j for j, yes in enumerate(row) if yes and j != i), key=lambda j: (-scores[i][j], j))[:k]
        if not partners:
            continue
        edge = tuple(sorted({i, *partners}))
        if edge not in seen:
            seen.add(edge)
            edges.append(edge)
    return edges


def _bernoulli(
    logit: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(draw, its log-probability, the entropy) of Bernoulli(sigmoid(logit)), elementwise."""
    p = torch.sigmoid(logit)
    draw = torch.rand(logit.shape, generator=generator) < p.detach()
    log_prob = torch.where(draw, nn.functional.logsigmoid(logit), nn.functional.logsigmoid(-logit))
    entropy = nn.functional.binary_cross_entropy_with_logits(logit, p, reduction="none")
    return draw, log_prob, entropy


def sample_top_k(
    logits: torch.Tensor,
    alone: torch.Tensor,
    more: torch.Tensor,
    k: int,
    *,
    margin: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each agent draws its partners without replacement (Plackett–Luce), up to k, or works alone.

    An agent first decides to work alone, with probability
    ``sigmoid(alone − margin)``; otherwise it draws its first partner from a
    softmax over the partners' logits, then, for each further draw up to k,
    takes another with probability ``sigmoid(more + margin)``. The gates are
    separate from the affinities, so a partner's affinity growing never makes
    stopping unreachable, and working alone (which cuts an agent off) is not
    the same decision as a smaller group. The most likely draw is
    :func:`top_k_choice`: the paper's top-k, cut short only where a gate's
    logit passes the margin.

    Args:
        logits: ``(M, N, N)``, ``-inf`` on the diagonal.
        alone: ``(M, N)``, the "work alone" logits.
        more: ``(M, N)``, the "take another partner" logits.
        k: partners per agent at most (at most N − 1 are available).
        margin: logits by which a gate must pass 0 to cut the top-k short.

    Returns:
        (picks ``(M, N, N)`` 0/1, each agent's log-probability of its draws ``(M, N)``, the
        entropy of every decision: each agent's gates and its first partner draw, ``(D, M, N)``).
    """
    m, n, _ = logits.shape
    done, log_prob, gate_entropy = _bernoulli(alone - margin, generator)
    entropies = [gate_entropy]
    blocked = torch.zeros(m, n, n, dtype=torch.bool)
    for t in range(min(k, n - 1)):
        if t:
            go, lp, ent = _bernoulli(more + margin, generator)
            log_prob = log_prob + lp.masked_fill(done, 0.0)
            entropies.append(ent)
            done = done | ~go
        logp = torch.log_softmax(logits.masked_fill(blocked, float("-inf")), dim=-1)
        if t == 0:
            entropies.append(-(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1))
        idx = torch.multinomial(logp.detach().exp().reshape(-1, n), 1, generator=generator).reshape(m, n)
        step = logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        log_prob = log_prob + step.masked_fill(done, 0.0)
        blocked = blocked | (nn.functional.one_hot(idx, n).bool() & ~done.unsqueeze(-1))
    return blocked.to(logits.dtype), log_prob, torch.stack(entropies)


def top_k_choice(
    logits: torch.Tensor, alone: torch.Tensor, more: torch.Tensor, k: int, *, margin: float = 1.0
) -> torch.Tensor:
    """The most likely draw of :func:`sample_top_k`, ``(N, N)`` 0/1: each agent's top-k partners
    by logit; only the first where ``more + margin < 0``; none (it works alone) where ``alone − margin > 0``."""
    n = logits.shape[-1]
    top = torch.topk(logits, min(k, n - 1), dim=-1)
    keep = torch.ones_like(top.values)
    keep[..., 1:] = (more + margin >= 0).to(logits.dtype).unsqueeze(-1)
    keep = keep * (alone - margin <= 0).to(logits.dtype).unsqueeze(-1)
    return torch.zeros_like(logits).scatter(-1, top.indices, keep)
