"""hyperteam: layered agent teams and hypergraph topologies for LLMs.

Example:
    >>> import hyperteam as ht
    >>> solver = ht.Agent(name="solver", role="careful math tutor",
    ...                   instructions="Solve step by step. End with '#### <number>'.")
    >>> team = ht.LayeredTeam([ht.Layer("solve", agents=[solver.clone(name=f"s{i}") for i in range(3)])],
    ...                       model="sim:0.8")
    >>> result = team.run_sync("Janet's ducks lay 16 eggs per day ...")  # doctest: +SKIP
"""

from hyperteam import backends as _backends  # noqa: F401  (registers the vllm: model-spec prefix)
from hyperteam import models, optim
from hyperteam.agents import Agent, AgentOutput, TraceEvent, extract_answer
from hyperteam.errors import ConfigError, HyperteamError, LimitError, ModelError, ParseError
from hyperteam.evals import datasets
from hyperteam.evals.runner import evaluate
from hyperteam.fusion import Fusion, get_fusion
from hyperteam.models import ChatModel, ChatRequest, ChatResult, Runtime, Usage
from hyperteam.topologies import HypergraphTeam, Layer, LayeredTeam, LearnedHypergraphTeam, Team, TeamResult, load_team

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentOutput",
    "ChatModel",
    "ChatRequest",
    "ChatResult",
    "ConfigError",
    "Fusion",
    "HypergraphTeam",
    "HyperteamError",
    "Layer",
    "LayeredTeam",
    "LearnedHypergraphTeam",
    "LimitError",
    "ModelError",
    "ParseError",
    "Runtime",
    "Team",
    "TeamResult",
    "TraceEvent",
    "Usage",
    "__version__",
    "datasets",
    "evaluate",
    "extract_answer",
    "get_fusion",
    "load_team",
    "models",
    "optim",
]
