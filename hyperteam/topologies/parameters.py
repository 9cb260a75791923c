"""Trainable parameters: every role, instruction text and aggregator choice of a team, by name.

A parameter is a live view of one field of a team (TextGrad's ``Variable``
with ``requires_grad``): reading ``value`` reads the team, writing it writes
the team, validated like the spec. ``grad`` is the textual gradient that
``loss.backward()`` left for it.

Names follow the spec's nesting, so that a reader finds the field in the
team file: ``layers.solve.agents.tutor.role``, ``layers.solve.fusion``,
``layers.solve.candidates``; a hypergraph team has ``agents.tutor.role``
and ``fusion``.

Example:
    >>> import hyperteam as ht
    >>> team = ht.load_team("ann-gsm8k")
    >>> [name for name, _ in team.named_parameters()][:2]
    ['layers.solve.agents.tutor.role', 'layers.solve.agents.tutor.instructions']
    >>> team.load_state_dict(team.state_dict())
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from hyperteam.errors import ConfigError
from hyperteam.fusion import get_fusion

if TYPE_CHECKING:
    from hyperteam.topologies.team import Team

Kind = Literal["role", "instructions", "fusion", "candidates"]

_DESCRIPTIONS: dict[str, str] = {
    "role": "who agent {agent} of layer {layer} is: its persona, shown to it in every prompt",
    "instructions": "what agent {agent} of layer {layer} is told to do on every problem",
    "fusion": "the aggregation function that joins the outputs of layer {layer}",
    "candidates": "the other aggregators a router may pick per task in layer {layer}",
}


@dataclass(eq=False)
class Parameter:
    """One trainable field of a team: its name, what it is for, its value and its gradient.

    Attributes:
        name: the dotted name (``layers.solve.agents.tutor.role``).
        kind: ``role``, ``instructions``, ``fusion`` or ``candidates``.
        layer: the layer it belongs to ("" for a team without layers).
        role_description: what the text does in the team, shown to the optimizer.
    """

    name: str
    kind: Kind
    layer: str
    role_description: str
    owner: BaseModel
    field: str
    team: Team

    @property
    def value(self) -> Any:
        return copy.deepcopy(getattr(self.owner, self.field))

    @value.setter
    def value(self, new: Any) -> None:
        check_value(self, new)
        try:
            setattr(self.owner, self.field, copy.deepcopy(new))
        except ValidationError as exc:
            raise ConfigError(f"{self.name}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None

    @property
    def grad(self) -> str | None:
        """The textual gradient of this parameter (its layer's local gradient), if any."""
        return self.team._grads.get(self.name)

    @grad.setter
    def grad(self, text: str | None) -> None:
        if text is None:
            self.team._grads.pop(self.name, None)
        else:
            self.team._grads[self.name] = text


def named_parameters(team: Team) -> list[tuple[str, Parameter]]:
    """The team's parameters in spec order (see the module docstring for the names)."""
    found: list[tuple[str, Parameter]] = []

    def add(prefix: str, kind: Kind, layer: str, owner: BaseModel, field: str, agent: str = "") -> None:
        name = f"{prefix}{field}"
        text = _DESCRIPTIONS[kind].format(agent=agent, layer=layer or team.name)
        found.append((name, Parameter(name, kind, layer, text, owner, field, team)))

    layers = getattr(team, "layers", None)
    if layers is not None:
        for layer in layers:
            for agent in layer.agents:
                for field in ("role", "instructions"):
                    add(f"layers.{layer.name}.agents.{agent.name}.", field, layer.name, agent, field, agent.name)
            add(f"layers.{layer.name}.", "fusion", layer.name, layer, "fusion")
            add(f"layers.{layer.name}.", "candidates", layer.name, layer, "candidates")
        return found
    for agent in getattr(team, "agents", []):
        for field in ("role", "instructions"):
            add(f"agents.{agent.name}.", field, "", agent, field, agent.name)
    if hasattr(team, "fusion"):
        add("", "fusion", "", team, "fusion")
    return found


def check_value(param: Parameter, value: Any) -> None:
    """Raises ConfigError, naming the parameter, unless ``value`` suits it."""
    if param.kind in ("role", "instructions"):
        if not isinstance(value, str):
            raise ConfigError(f"{param.name}: expected text, got {type(value).__name__}")
        return
    specs = value if param.kind == "candidates" else [value]
    if not isinstance(specs, list):
        raise ConfigError(f"{param.name}: expected a list of aggregators, got {type(value).__name__}")
    for spec in specs:
        try:
            get_fusion(spec)
        except ConfigError as exc:
            raise ConfigError(f"{param.name}: {exc}") from None


def load_state_dict(team: Team, state: dict[str, Any], *, strict: bool = True) -> None:
    """Sets every parameter named in ``state``; checks all values first, so it never half-applies."""
    if not isinstance(state, dict):
        raise ConfigError(f"a state dict must be a mapping, got {type(state).__name__}")
    params = dict(named_parameters(team))
    unknown = sorted(set(state) - set(params))
    missing = sorted(set(params) - set(state))
    if strict and (unknown or missing):
        parts = [f"unknown: {', '.join(unknown)}"] if unknown else []
        parts += [f"missing: {', '.join(missing)}"] if missing else []
        raise ConfigError(f"state dict does not match the team ({'; '.join(parts)})")
    chosen = {name: value for name, value in state.items() if name in params}
    for name, value in chosen.items():
        check_value(params[name], value)
    before = {name: params[name].value for name in chosen}
    try:
        for name, value in chosen.items():
            params[name].value = value
    except ConfigError:
        for name, value in before.items():  # a cross-field check failed: put everything back
            setattr(params[name].owner, params[name].field, value)
        raise
