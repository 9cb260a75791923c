"""Topology learning: REINFORCE for HyperAgent, G-Designer and AgentPrune, their reward, report and CLI.

The learners themselves (sampling and decoding a topology for a query) are
part of the forward pass, in :mod:`hyperteam.topologies.learned`; this
package trains them. ``fit`` and ``train_step`` need torch
(``pip install 'hyperteam[learn]'``) and import it on first use.

Example:
    >>> from hyperteam.optim.topology import TeamReward, fit  # doctest: +SKIP
    >>> history = fit(gen, problems, reward=TeamReward(gen.agents, model="sim:0.7"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from hyperteam.optim.topology.reward import Outcome, Reward, TeamReward

__all__ = ["Outcome", "Reward", "TeamReward", "fit", "train_step"]


def __getattr__(name: str) -> Any:
    if name in ("fit", "train_step"):
        from hyperteam.topologies.learned._torch import require_torch

        require_torch()
        from hyperteam.optim.topology import reinforce

        return getattr(reinforce, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
