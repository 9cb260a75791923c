"""Team topologies: layered teams (ANN), hypergraph teams (HyperAgent), and the machinery they compile to."""

from hyperteam.topologies.builtin import BUILTIN_TEAMS
from hyperteam.topologies.export import draw, to_dot, to_mermaid
from hyperteam.topologies.hypergraph import HypergraphTeam
from hyperteam.topologies.io import load_team, team_from_dict, team_to_dict
from hyperteam.topologies.layered import Layer, LayeredTeam
from hyperteam.topologies.learned.team import LearnedHypergraphTeam
from hyperteam.topologies.result import RunContext, TeamResult
from hyperteam.topologies.team import Team

__all__ = [
    "BUILTIN_TEAMS",
    "HypergraphTeam",
    "Layer",
    "LayeredTeam",
    "LearnedHypergraphTeam",
    "RunContext",
    "Team",
    "TeamResult",
    "draw",
    "load_team",
    "team_from_dict",
    "team_to_dict",
    "to_dot",
    "to_mermaid",
]
