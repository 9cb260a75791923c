"""Fusion strategies: how a layer combines its agents' outputs, selectable by name or spec.

Example:
    >>> get_fusion({"name": "debate", "max_rounds": 2})
    Debate(max_rounds=2, consensus=0.6666666666666666)
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hyperteam.errors import ConfigError
from hyperteam.fusion.adaptive import Adaptive
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.chain import Chain
from hyperteam.fusion.collect import Collect
from hyperteam.fusion.confidence import ConfidenceVote
from hyperteam.fusion.debate import Debate
from hyperteam.fusion.judge import Judge
from hyperteam.fusion.ranked import RankedVote
from hyperteam.fusion.select import LLMSelect
from hyperteam.fusion.synthesize import LLMSynthesize
from hyperteam.fusion.vote import MajorityVote, plurality, weighted_plurality
from hyperteam.fusion.weighted import WeightedVote

REGISTRY: dict[str, type[Fusion]] = {}


def register(cls: type[Fusion]) -> type[Fusion]:
    """Makes a fusion class available by its ``name`` in team specs."""
    REGISTRY[cls.name] = cls
    return cls


for _cls in (
    MajorityVote,
    Collect,
    WeightedVote,
    ConfidenceVote,
    LLMSynthesize,
    LLMSelect,
    Judge,
    RankedVote,
    Debate,
    Chain,
    Adaptive,
):
    register(_cls)


def get_fusion(spec: str | dict[str, Any] | Fusion) -> Fusion:
    """A fusion strategy from a name (``"majority_vote"``) or a spec (``{"name": ..., **params}``).

    Raises:
        ConfigError: unknown name or bad parameters; the message names the fusion and the field.
    """
    if isinstance(spec, Fusion):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError("a fusion spec needs a 'name'")
    else:
        raise ConfigError(f"fusion must be a name or a spec dict, got {type(spec).__name__}")
    cls = REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown fusion {name!r}; known: {', '.join(sorted(REGISTRY))}")
    try:
        return cls(**params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"fusion {name!r}: {where}: {msg}" if where else f"fusion {name!r}: {msg}") from None


__all__ = [
    "REGISTRY",
    "Adaptive",
    "Chain",
    "Collect",
    "ConfidenceVote",
    "Debate",
    "Fusion",
    "FusionContext",
    "FusionResult",
    "Judge",
    "LLMSelect",
    "LLMSynthesize",
    "MajorityVote",
    "RankedVote",
    "WeightedVote",
    "get_fusion",
    "plurality",
    "register",
    "weighted_plurality",
]
