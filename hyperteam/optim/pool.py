"""Post-training growth: a pool of proven layer variants, and teams assembled from them.

Each time training accepts a step, the layers the step changed are added to
the pool with the validation score that got them accepted. A new team, for
the same task or a related one, is assembled from the best variant of each
named layer (ANN, section 3.3: "layer-wise modules ... reused as building
blocks"). Identical variants are kept once, with their best score.

Example:
    >>> import hyperteam as ht
    >>> pool = LayerPool()
    >>> team = ht.load_team("ann-gsm8k")
    >>> for layer in team.layers:
    ...     pool.add(layer, score=0.7, step=0, source=team.name)
    >>> assemble(pool, ["solve", "verify"], name="reassembled").name
    'reassembled'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from hyperteam.errors import ConfigError
from hyperteam.topologies.io import team_from_dict
from hyperteam.topologies.layered import Layer, LayeredTeam


@dataclass(slots=True)
class Variant:
    """One accepted version of a layer: its spec, the validation score it reached, where it came from."""

    layer: dict[str, Any]
    score: float
    step: int
    source: str


class LayerPool:
    """Accepted layer variants, by layer name, best first."""

    def __init__(self) -> None:
        self.variants: dict[str, list[Variant]] = {}

    def add(self, layer: Layer | dict[str, Any], *, score: float, step: int, source: str) -> None:
        """Adds a variant (a ``Layer`` or its spec); an identical one already there keeps the better score."""
        spec = _plain(layer.model_dump(mode="python") if isinstance(layer, Layer) else layer)
        found = self.variants.setdefault(spec["name"], [])
        for v in found:
            if v.layer == spec:
                if score > v.score:
                    v.score, v.step, v.source = score, step, source
                break
        else:
            found.append(Variant(spec, score, step, source))
        found.sort(key=lambda v: (-v.score, v.step))

    def best(self, name: str) -> Variant:
        """The best-scoring variant of layer ``name``.

        Raises:
            ConfigError: the pool has no such layer.
        """
        if not self.variants.get(name):
            raise ConfigError(f"the layer pool has no layer {name!r}; it has: {', '.join(self.variants) or 'none'}")
        return self.variants[name][0]

    def __len__(self) -> int:
        return sum(len(v) for v in self.variants.values())

    def to_dict(self) -> dict[str, Any]:
        return {name: [asdict(v) for v in found] for name, found in self.variants.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerPool:
        pool = cls()
        pool.variants = {name: [Variant(**v) for v in found] for name, found in data.items()}
        return pool

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LayerPool:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot read layer pool {str(path)!r}: {exc}") from None


def assemble(
    pool: LayerPool, layers: list[str | tuple[str, int]], *, name: str = "assembled", **team_fields: Any
) -> LayeredTeam:
    """A new layered team from pooled variants, in the order given.

    Args:
        pool: the pool (e.g. ``trainer.pool``).
        layers: layer names (best variant) or ``(name, index)`` pairs (the index-th best).
        name: the new team's name.
        team_fields: other team fields (``model``, ``description``, ``refine``).

    Raises:
        ConfigError: an unknown layer or index, or an invalid resulting team.
    """
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in layers:
        layer_name, index = (item, 0) if isinstance(item, str) else item
        best = pool.best(layer_name)  # raises for an unknown layer
        found = pool.variants[layer_name]
        if not 0 <= index < len(found):
            raise ConfigError(f"layer {layer_name!r} has {len(found)} variant(s) in the pool, not an index {index}")
        spec = json.loads(json.dumps(found[index].layer if index else best.layer))
        for agent in spec["agents"]:
            if agent["name"] in seen:  # blocks from different teams may reuse agent names
                agent["name"] = f"{agent['name']}_{layer_name}"
            seen.add(agent["name"])
        specs.append(spec)
    team = team_from_dict({"kind": "layered", "name": name, "layers": specs, **team_fields}, source="assembled team")
    return cast(LayeredTeam, team)  # kind "layered" above


def _plain(value: Any) -> Any:
    """Spec data as JSON values; model objects by their names."""
    return json.loads(json.dumps(value, default=lambda o: getattr(o, "name", type(o).__name__)))
