"""Adaptive fusion: per-source reliability, conditioned on the query, selects the sources and weights their votes."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from hyperteam.agents._numbers import normalize_number
from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import first_with, is_tie, no_answer, voters, weighted_plurality
from hyperteam.models.types import Usage

_TOKEN = re.compile(r"[a-z][a-z0-9]*|[$%]")  # numbers say little about what kind of problem it is
_CLIP = 1e-3


@lru_cache(maxsize=4096)
def query_features(text: str, dim: int) -> tuple[float, ...]:
    """The query as ``dim`` signed hashed word counts, L2-normalised (dependency-free, deterministic).

    Example:
        >>> v = query_features("How many dollars?", 8)
        >>> len(v), round(sum(x * x for x in v), 6)
        (8, 1.0)
    """
    vec = [0.0] * dim
    for word in _TOKEN.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vec[int.from_bytes(digest[:4], "little") % dim] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    return tuple(x / norm for x in vec) if norm else tuple(vec)


def _logit(p: float) -> float:
    p = min(1.0 - _CLIP, max(_CLIP, p))
    return math.log(p / (1.0 - p))


class Adaptive(Fusion):
    """Selects the ``top_k`` sources most reliable *for this query* and weights their votes by reliability.

    The inference-time counterpart of Kong et al. (2025)'s adaptive source
    selection and dynamic weighted fusion, trained from right/wrong feedback:

    - **Reliability, conditioned on the input.** Each source (agent) has a
      prior score in [0, 1] (``scores``; ``default_score`` when it has none)
      and a weight vector over the query's hashed words (``weights``,
      ``features`` long, after a bias): its reliability on query x is
      ``sigmoid(logit(score) + b + w · φ(x))``. So an agent can be trusted on
      money problems and not on geometry.
    - **Selection with a balancing term.** Sources are ranked by the logit of
      their reliability less ``balance · (how often it was selected − top_k/n)``
      (the running rates in ``selected``): a source that has been in every
      selection must be clearly better to stay there, which keeps selection
      off a single subset (Kong et al.'s feedback loss does this for their
      selector) without touching the vote weights.
    - **Fusion.** Each selected answer counts by the source's reliability
      (``vote="reliability"``) or by its log-odds (``vote="log_odds"``, the
      weights of a vote that knows the accuracies; a source whose reliability
      is under 0.5 abstains); ties go to the answer whose first vote came
      earliest in agent order.
    - **Learning** (:meth:`feedback`, one scored example at a time; ``hyperteam
      eval --adapt`` and topology training call it). With the query given,
      ``(b, w)`` take one logistic-regression step
      ``(b, w) += feature_rate * (y - r(x)) * (1, φ(x))`` and the prior stays;
      without it, the prior moves as an exponential moving average
      ``s <- s + learning_rate * (1[correct] - s)`` (an average that forgets:
      sources drift).
      A source that failed or gave no answer counts as wrong. Strategies are
      frozen like every fusion, so ``feedback`` returns a new instance; put its
      :meth:`spec` back on the layer. Everything learned is in the spec, so it
      is saved with the team file.

    Args:
        scores: prior reliability per agent name, in [0, 1].
        top_k: how many sources vote (default all: every answer already paid for may carry information).
        default_score: the prior of an agent with no score.
        learning_rate: the step of the prior's moving average (feedback without the query) and of
            the selection rates, in (0, 1].
        features: length of the query features (0: reliability ignores the query).
        weights: per agent, its bias then its weights over the query features.
        feature_rate: the logistic-regression step of the weights.
        balance: strength of the balancing term in selection (0: none).
        selected: per agent, the running rate at which it was selected.
        vote: ``"log_odds"`` (default) or ``"reliability"`` weights.

    Example:
        >>> fusion = Adaptive(scores={"a": 0.5, "b": 0.5})
        >>> fusion = fusion.feedback([AgentOutput("a", "", "4"), AgentOutput("b", "", "5")], gold="4")
        >>> fusion.scores
        {'a': 0.6, 'b': 0.4}
        >>> layer.fusion = fusion.spec()  # doctest: +SKIP
    """

    name = "adaptive"

    scores: dict[str, float] = Field(default_factory=dict)
    top_k: int | None = Field(default=None, ge=1)
    default_score: float = Field(default=0.5, ge=0.0, le=1.0)
    learning_rate: float = Field(default=0.2, gt=0.0, le=1.0)
    features: int = Field(default=64, ge=0, le=4096)
    weights: dict[str, list[float]] = Field(default_factory=dict)
    feature_rate: float = Field(default=0.2, ge=0.0)
    balance: float = Field(default=0.5, ge=0.0)
    selected: dict[str, float] = Field(default_factory=dict)
    vote: Literal["reliability", "log_odds"] = "log_odds"

    @field_validator("scores")
    @classmethod
    def _in_unit_interval(cls, scores: dict[str, float]) -> dict[str, float]:
        for agent, s in scores.items():
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"must be in [0, 1]; got {agent}={s}")
        return scores

    def _logit_for(self, agent: str, task: str | None) -> float:
        z = _logit(self.scores.get(agent, self.default_score))
        w = self.weights.get(agent)
        if w and task and self.features:
            z += w[0] + sum(a * b for a, b in zip(w[1:], query_features(task, self.features), strict=False))
        return z

    def reliability(self, agent: str, task: str | None = None) -> float:
        """The reliability of ``agent``: its prior score, adjusted for ``task`` when given."""
        if task is None or not self.weights.get(agent) or not self.features:
            return self.scores.get(agent, self.default_score)
        return 1.0 / (1.0 + math.exp(-self._logit_for(agent, task)))

    def select(self, outputs: Sequence[AgentOutput], task: str | None = None) -> list[AgentOutput]:
        """The ``top_k`` outputs with an answer whose sources rank highest for ``task``, in agent order."""
        usable = voters(outputs)
        k = len(usable) if self.top_k is None else min(self.top_k, len(usable))
        share = k / len(usable) if usable else 0.0

        def rank(i: int) -> tuple[float, int]:
            agent = usable[i].agent
            busy = self.selected.get(agent, share) - share
            return (-(self._logit_for(agent, task) - self.balance * busy), i)

        keep = sorted(sorted(range(len(usable)), key=rank)[:k])
        return [usable[i] for i in keep]

    def _weight(self, agent: str, task: str | None) -> float:
        r = self.reliability(agent, task)
        if self.vote == "reliability":
            return r
        # A source no better than a coin abstains rather than vote against its answer: with
        # estimated reliabilities, negative weights turn a slightly misjudged expert's vote into
        # a vote for whatever few others said. The small reliability term breaks ties.
        return max(_logit(r), 0.0) + 1e-3 * r

    def feedback(
        self,
        outputs: Sequence[AgentOutput | TraceEvent],
        gold: str | int | float,
        *,
        layer: str | None = None,
        task: str | None = None,
    ) -> Adaptive:
        """A copy that learned from one scored example.

        Args:
            outputs: the layer's agent outputs on the example, or a run's trace (its agent events count).
            gold: the right answer; numbers are normalised like answers (``"1,000"`` == ``1000``).
            layer: with a trace, only this layer's agent events count.
            task: the query; with it the query-conditioned weights and the selection rates learn too.
        """
        target = normalize_number(gold) or str(gold).strip()
        scores = dict(self.scores)
        weights = {a: list(w) for a, w in self.weights.items()}
        phi = (1.0, *query_features(task, self.features)) if task and self.features else None
        seen: list[AgentOutput | TraceEvent] = []
        for o in outputs:
            if isinstance(o, TraceEvent) and (o.kind != "agent" or (layer is not None and o.layer != layer)):
                continue
            seen.append(o)
            right = 1.0 if o.error is None and o.answer == target else 0.0
            if phi is None:
                old = scores.get(o.agent, self.default_score)
                scores[o.agent] = round(old + self.learning_rate * (right - old), 12)
                continue
            # With the query, the prior stays put and a logistic regression on top of it learns
            # (a bias and the word weights): a prior that forgot quickly would follow whatever
            # kind of problem came last, which the weights are there to tell apart.
            err = right - self.reliability(o.agent, task)
            w = weights.get(o.agent) or [0.0] * len(phi)
            weights[o.agent] = [round(a + self.feature_rate * err * b, 6) for a, b in zip(w, phi, strict=True)]
        update: dict[str, object] = {"scores": scores, "weights": weights}
        if task is not None:
            chosen = {o.agent for o in self.select([_as_output(o) for o in seen], task)}
            share = (len(seen) if self.top_k is None else min(self.top_k, len(seen))) / len(seen) if seen else 0.0
            rates = dict(self.selected)
            for o in seen:
                old = rates.get(o.agent, share)
                rates[o.agent] = round(old + self.learning_rate * ((o.agent in chosen) - old), 6)
            update["selected"] = rates
        return type(self)(**{**self.model_dump(), **update})

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        chosen_sources = self.select(outputs, task)
        detail = {
            "scores": {o.agent: round(self.reliability(o.agent, task), 6) for o in outputs},
            "selected": [o.agent for o in chosen_sources],
        }
        winner, totals = weighted_plurality(chosen_sources, lambda o: self._weight(o.agent, task))
        if winner is None:
            return no_answer(ctx.layer, self.name, outputs, **detail)
        chosen = first_with(chosen_sources, winner)
        names = ", ".join(detail["selected"])
        reason = f"{winner} has the most reliability-weighted votes ({totals[winner]:.3g}) among {names}"
        if is_tie(totals, winner):
            reason += " (a tie, broken by agent order)"
        detail["votes"] = {a: round(w, 6) for a, w in totals.items()}
        output = AgentOutput(f"{ctx.layer}.{self.name}", chosen.text, winner, Usage())
        return FusionResult(output, reason, detail)


def _as_output(o: AgentOutput | TraceEvent) -> AgentOutput:
    if isinstance(o, AgentOutput):
        return o
    return AgentOutput(o.agent, "", o.answer if o.error is None else None, Usage(), error=o.error)
