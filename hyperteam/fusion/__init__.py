"""Fusion strategies: how a layer combines its agents' outputs, selectable by name or spec."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hyperteam.errors import ConfigError
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.synthesize import LLMSynthesize
from hyperteam.fusion.vote import MajorityVote, plurality

REGISTRY: dict[str, type[Fusion]] = {}


def register(cls: type[Fusion]) -> type[Fusion]:
    """Makes a fusion class available by its ``name`` in team specs."""
    REGISTRY[cls.name] = cls
    return cls


for _cls in (MajorityVote, LLMSynthesize):
    register(_cls)


def get_fusion(spec: str | dict[str, Any] | Fusion) -> Fusion:
    """A fusion strategy from a name (``"majority_vote"``) or a spec (``{"name": ..., **params}``).

    Raises:
        ConfigError: unknown name or bad parameters.
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
        raise ConfigError(f"fusion {name!r}: {where}: {first['msg']}") from None


__all__ = [
    "REGISTRY",
    "Fusion",
    "FusionContext",
    "FusionResult",
    "LLMSynthesize",
    "MajorityVote",
    "get_fusion",
    "plurality",
    "register",
]
