"""Team topologies: layered teams (ANN), and the machinery they compile to."""

from hyperteam.topologies.builtin import BUILTIN_TEAMS
from hyperteam.topologies.io import load_team, team_from_dict, team_to_dict
from hyperteam.topologies.layered import Layer, LayeredTeam
from hyperteam.topologies.result import RunContext, TeamResult
from hyperteam.topologies.team import Team

__all__ = [
    "BUILTIN_TEAMS",
    "Layer",
    "LayeredTeam",
    "RunContext",
    "Team",
    "TeamResult",
    "load_team",
    "team_from_dict",
    "team_to_dict",
]
