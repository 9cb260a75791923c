"""Learned communication topologies: HyperAgent's hypergraph generator and the G-Designer and AgentPrune baselines.

They need torch (``pip install 'hyperteam[learn]'``), imported only when one
of these names is first used, so ``import hyperteam`` stays light.

Example:
    >>> from hyperteam.topologies.learned import HypergraphGenerator  # doctest: +SKIP
    >>> gen = HypergraphGenerator(["a", "b", "c", "d"], k=2)  # doctest: +SKIP
    >>> gen.best("Janet's ducks lay 16 eggs per day ...")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "HypergraphGenerator": "hyperagent",
    "GDesignerGenerator": "hyperagent",
    "TopologyLearner": "generator",
    "LEARNERS": "generator",
    "load_generator": "generator",
    "AgentPruneGenerator": "agentprune",
    "LearnedHypergraphTeam": "team",
    "LearnedTopology": "team",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module in ("generator", "hyperagent", "agentprune"):
        from hyperteam.topologies.learned._torch import require_torch

        require_torch()
    if name == "LEARNERS":
        return importlib.import_module(f"{__name__}.generator").learners()
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
