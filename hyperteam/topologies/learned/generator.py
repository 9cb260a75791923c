"""What every topology learner shares: sampling, saving and loading.

Every learner is a policy over communication structures for a query. It
``sample``s a structure (a list of hyperedges over agent names) with its
log-probability and gives a deterministic ``best`` one for evaluation.
Training (REINFORCE on utility = correct − λ · tokens, plus the learner's
regularisers) lives with the other trainers, in :mod:`hyperteam.optim.topology`. ``save`` writes plain
JSON (no pickle); :func:`load_generator` reads any learner back. The
learners themselves: :mod:`.hyperagent` (HyperAgent, G-Designer) and
:mod:`.agentprune`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.topologies.embed import Embedder, HashingEmbedder, embedder_from_config
from hyperteam.topologies.hypergraph import Hyperedges
from hyperteam.topologies.learned.layers import bernoulli_log_prob

log = logging.getLogger(__name__)

FORMAT = "hyperteam.topology/1"
QUERY_CACHE = 4096
LEARNERS: dict[str, type[TopologyLearner]] = {}


def learners() -> dict[str, type[TopologyLearner]]:
    """Every learner kind by name (``hyperagent``, ``gdesigner``, ``agentprune``)."""
    import hyperteam.topologies.learned.agentprune
    import hyperteam.topologies.learned.hyperagent  # noqa: F401

    return dict(LEARNERS)


def agent_text(agent: Agent) -> str:
    """What the embedder sees of an agent."""
    return f"{agent.name}: {agent.role}. {agent.instructions}".strip()


class TopologyLearner(torch.nn.Module):
    """What the learners share: agents, embeddings, sampling, saving.

    Subclasses give ``_policy`` (edge probabilities and a regulariser for a
    query), ``_mask`` (which entries are sampled) and ``_structure`` (the
    hyperedges of a sampled 0/1 matrix).
    """

    learner: ClassVar[str] = ""

    def __init__(self, agents: Sequence[Agent | str], embedder: Embedder | None = None, *, seed: int = 0) -> None:
        super().__init__()
        self.agents = [a if isinstance(a, Agent) else Agent(name=a) for a in agents]
        names = [a.name for a in self.agents]
        if len(names) < 2:
            raise ConfigError(f"a learned topology needs at least 2 agents, got {len(names)}")
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate agent names: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        self.names = names
        self.embedder = embedder if embedder is not None else HashingEmbedder()
        self.seed = seed
        self.steps = 0
        self._rng = torch.Generator().manual_seed(seed)
        self._queries: dict[str, torch.Tensor] = {}
        torch.manual_seed(seed)  # parameter initialisation in subclasses: same seed, same generator
        self.register_buffer("agent_features", torch.tensor(self.embedder.embed([agent_text(a) for a in self.agents])))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.learner:
            LEARNERS[cls.learner] = cls

    @property
    def n(self) -> int:
        return len(self.names)

    def query_vector(self, query: str) -> torch.Tensor:
        """The query's embedding, ``(1, dim)``; cached, since training embeds each query once per step."""
        vec = self._queries.get(query)
        if vec is None:
            self.remember([query])
            vec = self._queries[query]
        return vec

    def remember(self, queries: list[str]) -> None:
        """Embeds ``queries`` in one call and caches them (most recent ``QUERY_CACHE``)."""
        todo = [q for q in dict.fromkeys(queries) if q not in self._queries]
        if todo:
            for q, v in zip(todo, self.embedder.embed(todo), strict=True):
                self._queries[q] = torch.tensor([v])
            while len(self._queries) > QUERY_CACHE:
                self._queries.pop(next(iter(self._queries)))

    # -- the policy, given by subclasses --------------------------------------

    def _policy(self, query: str, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities ``(max(samples, 1), N, N)``, regulariser). ``samples=0``: deterministic."""
        raise NotImplementedError

    def _mask(self) -> torch.Tensor:
        raise NotImplementedError

    def _structure(self, chosen: torch.Tensor, scores: torch.Tensor) -> list[tuple[int, ...]]:
        """The hyperedges of 0/1 ``chosen``; ``scores`` rank an agent's invited partners."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}

    # -- public API -------------------------------------------------------------

    def sample(self, query: str) -> Hyperedges:
        """One random hypergraph for ``query`` (lists of agent names)."""
        with torch.no_grad():
            return self._draw(query, 1)[0][0]

    def best(self, query: str) -> Hyperedges:
        """The deterministic hypergraph for ``query``: mean latent, every edge with probability > 0.5."""
        with torch.no_grad():
            probs, _ = self._policy(query, 0)
            chosen = (probs[0] > 0.5).float() * self._mask()
            return self._names(self._structure(chosen, probs[0]))

    def _names(self, edges: list[tuple[int, ...]]) -> Hyperedges:
        return [[self.names[i] for i in e] for e in edges]

    def _draw(self, query: str, samples: int) -> tuple[list[Hyperedges], torch.Tensor, torch.Tensor]:
        probs, reg = self._policy(query, samples)
        mask = self._mask()
        chosen = (torch.rand(probs.shape, generator=self._rng) < probs.detach()).float() * mask
        log_prob = bernoulli_log_prob(chosen, probs, mask)
        detached = probs.detach()
        return [self._names(self._structure(c, p)) for c, p in zip(chosen, detached, strict=True)], log_prob, reg

    def after_step(self) -> None:
        """Hook after each update (AgentPrune prunes here)."""

    # -- saving -------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Writes the learner as JSON: agents, embedder config, hyperparameters and weights."""
        state = {
            k: {"shape": list(v.shape), "data": v.detach().reshape(-1).tolist()} for k, v in self.state_dict().items()
        }
        data = {
            "format": FORMAT,
            "learner": self.learner,
            "agents": [a.model_dump(mode="json", exclude_defaults=True) for a in self.agents],
            "embedder": self.embedder.config(),
            "config": {"seed": self.seed, **self.config()},
            "steps": self.steps,
            "state": state,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TopologyLearner:
        """Reads a learner written by :meth:`save` (any kind when called on the base class)."""
        learner = load_generator(path)
        if cls is not TopologyLearner and not isinstance(learner, cls):
            raise ConfigError(f"{path}: holds a {learner.learner!r} topology, not {cls.learner!r}")
        return learner


def load_generator(path: str | Path) -> TopologyLearner:
    """Reads any topology learner written by ``save``.

    Raises:
        ConfigError: missing or unreadable file, or not a hyperteam topology file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read topology file {str(path)!r}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a hyperteam topology file (format {FORMAT!r})")
    cls = learners().get(data.get("learner", ""))
    if cls is None:
        raise ConfigError(f"{path}: unknown learner {data.get('learner')!r}; known: {', '.join(sorted(LEARNERS))}")
    agents = [Agent.model_validate(a) for a in data["agents"]]
    learner = cls(agents, embedder_from_config(data["embedder"]), **data.get("config", {}))
    state = {k: torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"]) for k, v in data["state"].items()}
    try:
        learner.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: weights do not fit the learner: {str(exc).splitlines()[0]}") from None
    learner.steps = int(data.get("steps", 0))
    return learner
