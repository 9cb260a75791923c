"""What every topology learner shares: sampling, REINFORCE training, saving and loading.

Every learner is a policy over communication structures for a query. It
``sample``s a structure (a list of hyperedges over agent names) with its
log-probability, gives a deterministic ``best`` one for evaluation, and
``fit``s by REINFORCE with a batch-mean baseline on
utility = correct − λ · tokens, plus its regularisers. ``save`` writes plain
JSON (no pickle); :func:`load_generator` reads any learner back. The
learners themselves: :mod:`.hyperagent` (HyperAgent, G-Designer) and
:mod:`.agentprune`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from hyperteam.agents.agent import Agent
from hyperteam.errors import ConfigError
from hyperteam.evals.datasets import Problem
from hyperteam.topologies.embed import Embedder, HashingEmbedder, embedder_from_config
from hyperteam.topologies.learned.layers import bernoulli_log_prob
from hyperteam.topologies.learned.reward import Hyperedges, Outcome, Reward, TeamReward

log = logging.getLogger(__name__)

FORMAT = "hyperteam.topology/1"
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
    """What the learners share: agents, embeddings, sampling, REINFORCE training, saving.

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
        torch.manual_seed(seed)  # parameter initialisation in subclasses: same seed, same generator
        self.register_buffer("agent_features", torch.tensor(self.embedder.embed([agent_text(a) for a in self.agents])))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.learner:
            LEARNERS[cls.learner] = cls

    @property
    def n(self) -> int:
        return len(self.names)

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

    def fit(
        self,
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
            reward = TeamReward(self.agents, rounds=rounds, fusion=fusion, model=model, concurrency=concurrency)
        optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr)
        history: list[dict[str, Any]] = []
        problems = list(train_suite)
        for _ in range(epochs):
            order = torch.randperm(len(problems), generator=self._rng).tolist()
            for start in range(0, len(problems), batch):
                chunk = [problems[i] for i in order[start : start + batch]]
                record = self.train_step(chunk, reward, samples_per_query, token_penalty, optimizer)
                history.append(record)
                if on_step is not None:
                    on_step(record)
        return history

    def train_step(
        self, problems: Sequence[Problem], reward: Reward, samples: int, token_penalty: float, optimizer: Any
    ) -> dict[str, Any]:
        """One REINFORCE update on a batch of problems; returns the step's record."""
        started = time.perf_counter()
        draws = [self._draw(p.question, samples) for p in problems]
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
        self.after_step()
        self.steps += 1
        flat = [o for outs in outcomes for o in outs]
        edges = [len(s) for d in draws for s in d[0]]
        log.debug("%s step %d: loss %.4f over %d problems", self.learner, self.steps, loss.item(), len(problems))
        return {
            "step": self.steps,
            "utility": sum(utilities) / len(utilities),
            "accuracy": sum(o.correct for o in flat) / len(flat),
            "tokens_per_query": sum(o.tokens for o in flat) / len(flat),
            "hyperedges_per_query": sum(edges) / len(edges),
            "loss": float(loss.detach()),
            "seconds": round(time.perf_counter() - started, 4),
        }

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
