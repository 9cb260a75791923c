"""Online learning of a team's ``adaptive`` fusions from right/wrong feedback.

:class:`OnlineAdaptation` finds every place a team fuses with ``adaptive``
(a layer of a :class:`~hyperteam.topologies.layered.LayeredTeam`, or the
final fusion of a hypergraph team) and, given a finished run and the gold
answer, feeds each one the outputs it fused, with the query, and puts the
updated fusion back on the team. ``hyperteam eval --adapt`` calls it after
each problem is scored, so an answer is always given before the team learns
from that problem (prequential evaluation: the reported accuracy is never on
data the fusion already learned from); topology training calls it on its
training problems.

Example:
    >>> adapt = OnlineAdaptation(team)  # doctest: +SKIP
    >>> result = await team.run(problem.question)  # doctest: +SKIP
    >>> adapt.learn(problem.question, problem.answer, result)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hyperteam.agents.messages import TraceEvent
from hyperteam.fusion import get_fusion
from hyperteam.models.types import Usage
from hyperteam.topologies.result import TeamResult
from hyperteam.topologies.team import Team

log = logging.getLogger(__name__)

ADAPTIVE = "adaptive"


@dataclass(slots=True)
class _Site:
    owner: Any
    """The object whose ``fusion`` field holds the spec: a layer or a hypergraph team."""
    trace_layer: str
    """The trace layer whose agent events are what the fusion fused."""


class OnlineAdaptation:
    """Trains the ``adaptive`` fusions of ``team`` in place, one scored problem at a time.

    Args:
        team: a layered team, a hypergraph team or a learned-topology team.

    Attributes:
        learned: problems learned from so far.
    """

    def __init__(self, team: Team) -> None:
        self.team = team
        self.sites = _sites(team)
        self.learned = 0

    def __bool__(self) -> bool:
        return bool(self.sites)

    def learn(self, task: str, gold: str, result: TeamResult) -> None:
        """Feeds one finished run and its gold answer to every adaptive fusion of the team."""
        self._feed(task, gold, result.trace)

    def replay(self, task: str, gold: str, trace: list[dict[str, Any]]) -> None:
        """Like :meth:`learn`, from a stored trace (``TraceEvent.to_dict()`` rows of a run store)."""
        events = [
            TraceEvent(e["kind"], e["layer"], e["agent"], "", "", e.get("answer"), Usage(), e.get("error"))
            for e in trace
            if e.get("kind") == "agent"
        ]
        self._feed(task, gold, events)

    def _feed(self, task: str, gold: str, trace: list[TraceEvent]) -> None:
        for site in self.sites:
            fusion = get_fusion(site.owner.fusion)
            updated = fusion.feedback(trace, gold, layer=site.trace_layer, task=task)
            site.owner.fusion = updated.spec()
        self.learned += 1
        log.debug("adaptive fusion learned from %d problems", self.learned)


def _sites(team: Team) -> list[_Site]:
    layers = getattr(team, "layers", None)
    if layers is not None:
        return [_Site(layer, layer.name) for layer in layers if get_fusion(layer.fusion).name == ADAPTIVE]
    fusion = getattr(team, "fusion", None)
    rounds = getattr(team, "rounds", None)
    if fusion is not None and rounds is not None and get_fusion(fusion).name == ADAPTIVE:
        return [_Site(team, f"round{rounds}")]
    return []
