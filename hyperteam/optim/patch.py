"""The updater's output: a structured patch of one layer, read leniently, validated strictly, applied at once.

A patch is JSON ``{"ops": [...]}``, best between ``<patch>`` and ``</patch>``;
the JSON is also found in a fenced block, after prose, or bare (endpoints
asked for JSON output), and the usual slips of open models are repaired with
a note: trailing commas, Python literals, a bare list of operations or a
single operation, ``add_agent`` with flat fields, ``text``/``new_value`` for
``value``, op names like ``Set-Role``, and unknown keys (ignored). What is
still not a patch is rejected with the reason.

Operations on the layer: ``set_role``, ``set_instructions``, ``set_fusion``,
``add_agent``, ``remove_agent``, ``add_candidate``; on the team's structure:
``add_layer`` (a new layer after this one), ``remove_layer`` and
``move_layer`` (to a 1-based position). Parsing and applying either succeed
for the whole patch or raise with the reason; the team is then validated
against its schema by the caller before anything changes.

Example:
    >>> parse_patch('<patch>{"ops": [{"op": "set_fusion", "value": "llm_select"}]}</patch>').ops[0].op
    'set_fusion'
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from hyperteam.errors import ConfigError, ParseError
from hyperteam.optim._reply import find_json

_TEXT = 2000  # longest role or instructions an update may write


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetText(_Op):
    op: Literal["set_role", "set_instructions"]
    agent: str
    value: str = Field(min_length=1, max_length=_TEXT)


class SetFusion(_Op):
    op: Literal["set_fusion"]
    value: str | dict[str, Any]


class NewAgent(_Op):
    name: str
    role: str = Field(default="", max_length=_TEXT)
    instructions: str = Field(default="", max_length=_TEXT)


class AddAgent(_Op):
    op: Literal["add_agent"]
    agent: NewAgent


class RemoveAgent(_Op):
    op: Literal["remove_agent"]
    agent: str


class AddCandidate(_Op):
    op: Literal["add_candidate"]
    value: str | dict[str, Any]


class NewLayer(_Op):
    name: str
    agents: list[NewAgent] = Field(min_length=1, max_length=7)
    fusion: str | dict[str, Any] = "majority_vote"
    input_title: str | None = None


class AddLayer(_Op):
    op: Literal["add_layer"]
    layer: NewLayer


class RemoveLayer(_Op):
    op: Literal["remove_layer"]
    layer: str | None = None  # None: the layer the patch is for


class MoveLayer(_Op):
    op: Literal["move_layer"]
    layer: str | None = None
    position: int = Field(ge=1)


Op = Annotated[
    SetText | SetFusion | AddAgent | RemoveAgent | AddCandidate | AddLayer | RemoveLayer | MoveLayer,
    Field(discriminator="op"),
]
OP_NAMES = (
    "set_role", "set_instructions", "set_fusion", "add_agent", "remove_agent", "add_candidate",
    "add_layer", "remove_layer", "move_layer",
)  # fmt: skip


class Patch(BaseModel):
    """One layer's update: one to five operations, applied in order."""

    model_config = ConfigDict(extra="forbid")

    ops: list[Op] = Field(min_length=1, max_length=5)
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """How the reply was read: repairs made and keys ignored (empty for a clean reply)."""
        return self._notes

    @property
    def structural(self) -> bool:
        """Whether the patch adds, removes or moves layers."""
        return any(op.op in ("add_layer", "remove_layer", "move_layer") for op in self.ops)

    def describe(self) -> str:
        """The patch as JSON text, as stored in reports and histories."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True)["ops"], ensure_ascii=False)


def parse_patch(text: str) -> Patch:
    """The patch in an updater's reply; ``patch.notes`` says what was repaired or ignored.

    Raises:
        ParseError: no JSON, invalid JSON, or JSON that is not a patch (says which operation and field).
    """
    data, notes = find_json(text, "patch")
    data = _normalise(data, notes)
    try:
        patch = Patch.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ParseError(f"the patch does not fit the schema: {where or 'patch'}: {first['msg']}") from None
    patch._notes = notes
    return patch


_VALUE_ALIASES = ("value", "text", "new_value", "new", "content", "role", "instructions", "fusion", "aggregator")
_KNOWN = {
    "set_role": ("agent", "value"), "set_instructions": ("agent", "value"), "set_fusion": ("value",),
    "add_agent": ("agent",), "remove_agent": ("agent",), "add_candidate": ("value",),
    "add_layer": ("layer",), "remove_layer": ("layer",), "move_layer": ("layer", "position"),
}  # fmt: skip


def _normalise(data: Any, notes: list[str]) -> Any:
    """Brings the common shapes of open models' patches to ``{"ops": [...]}``, noting every change."""
    if isinstance(data, list):
        notes.append("a bare list of operations")
        data = {"ops": data}
    elif isinstance(data, dict) and "ops" not in data:
        for alias in ("operations", "patch", "updates", "changes"):
            if isinstance(data.get(alias), list | dict):
                notes.append(f"operations under {alias!r}")
                inner = data[alias]
                data = inner if isinstance(inner, dict) and "ops" in inner else {"ops": inner}
                break
        else:
            if "op" in data or "operation" in data:
                notes.append("a single operation")
                data = {"ops": [data]}
    if not isinstance(data, dict):
        return data
    extra = sorted(k for k in data if k != "ops")
    if extra:
        notes.append(f"ignored unknown keys {', '.join(extra)}")
    ops = data.get("ops")
    if isinstance(ops, dict):
        ops = [ops]
    if not isinstance(ops, list):
        return {"ops": ops}
    return {"ops": [_op(op, i, notes) if isinstance(op, dict) else op for i, op in enumerate(ops)]}


def _op(raw: dict[str, Any], i: int, notes: list[str]) -> dict[str, Any]:
    op = dict(raw)
    if "op" not in op:
        for alias in ("operation", "type", "action"):
            if alias in op:
                op["op"] = op.pop(alias)
                break
    name = op.get("op")
    if isinstance(name, str):
        canonical = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name.strip()).lower().replace("-", "_").replace(" ", "_")
        if canonical != name:
            notes.append(f"op {i}: {name!r} read as {canonical!r}")
        op["op"] = name = canonical
    if name not in _KNOWN:
        return op  # the schema rejects it with the op's name
    wanted = _KNOWN[name]
    if "agent" in wanted and "agent" not in op:
        for alias in ("agent_name", "name", "target"):
            if isinstance(op.get(alias), str) and name != "add_agent":
                op["agent"] = op.pop(alias)
                notes.append(f"op {i}: {alias!r} read as 'agent'")
                break
    if "value" in wanted and "value" not in op:
        for alias in _VALUE_ALIASES[1:]:
            if alias in op:
                op["value"] = op.pop(alias)
                notes.append(f"op {i}: {alias!r} read as 'value'")
                break
    if name == "add_agent":
        agent = op.get("agent")
        flat = {k: op.pop(k) for k in ("name", "role", "instructions") if k in op}
        if isinstance(agent, str):
            flat.setdefault("name", agent)
            agent = None
        if agent is None and flat:
            notes.append(f"op {i}: add_agent with flat fields")
            op["agent"] = flat
        elif isinstance(agent, dict):
            unknown = sorted(k for k in agent if k not in ("name", "role", "instructions"))
            if unknown:
                notes.append(f"op {i}: ignored unknown agent keys {', '.join(unknown)}")
                op["agent"] = {k: v for k, v in agent.items() if k not in unknown}
    if name == "add_layer" and not isinstance(op.get("layer"), dict):
        flat = {k: op.pop(k) for k in ("name", "agents", "fusion", "input_title") if k in op}
        if flat:
            notes.append(f"op {i}: add_layer with flat fields")
            op["layer"] = flat
    if name == "add_layer" and isinstance(op.get("layer"), dict):
        layer = op["layer"]
        unknown = sorted(k for k in layer if k not in NewLayer.model_fields)
        if unknown:
            notes.append(f"op {i}: ignored unknown layer keys {', '.join(unknown)}")
            op["layer"] = {k: v for k, v in layer.items() if k not in unknown}
    unknown = sorted(k for k in op if k != "op" and k not in wanted)
    if unknown:
        notes.append(f"op {i}: ignored unknown keys {', '.join(unknown)}")
        op = {k: v for k, v in op.items() if k == "op" or k in wanted}
    return op


def apply_patch(spec: dict[str, Any], layer: str, patch: Patch, *, max_agents: int = 7) -> dict[str, Any]:
    """A copy of the team spec ``spec`` with ``patch`` applied to layer ``layer``.

    New agents inherit the model and sampling settings of the layer's first
    agent. Adding a candidate aggregator turns the layer's LLM router on,
    since a candidate is only ever used through the router. A new layer goes
    right after ``layer``; its agents inherit the same settings.

    Raises:
        ConfigError: an operation names an agent or layer the team lacks, the layer would exceed
            ``max_agents``, or the team would be left without layers.
    """
    data = copy_spec(spec)
    found = [entry for entry in data.get("layers", []) if entry.get("name") == layer]
    if not found:
        raise ConfigError(f"the team has no layer {layer!r}")
    target = found[0]
    agents: list[dict[str, Any]] = target["agents"]
    layers: list[dict[str, Any]] = data["layers"]
    for i, op in enumerate(patch.ops):
        where = f"op {i} ({op.op})"
        if isinstance(op, AddLayer | RemoveLayer | MoveLayer):
            _structure(layers, target, op, where, max_agents)
            continue
        if target not in layers:
            raise ConfigError(f"{where}: layer {layer!r} was removed by an earlier operation of this patch")
        if isinstance(op, SetText):
            _agent(agents, op.agent, where, layer)[op.op.removeprefix("set_")] = op.value
        elif isinstance(op, SetFusion):
            target["fusion"] = op.value
        elif isinstance(op, AddAgent):
            if len(agents) >= max_agents:
                raise ConfigError(f"{where}: layer {layer!r} already has {len(agents)} agents (at most {max_agents})")
            new = {k: v for k, v in agents[0].items() if k not in ("name", "role", "instructions")}
            agents.append({"name": op.agent.name, "role": op.agent.role, "instructions": op.agent.instructions, **new})
        elif isinstance(op, RemoveAgent):
            agents.remove(_agent(agents, op.agent, where, layer))
        elif isinstance(op, AddCandidate):
            candidates = target.setdefault("candidates", [])
            if op.value == target.get("fusion") or op.value in candidates:
                raise ConfigError(f"{where}: {op.value!r} is already an aggregator of layer {layer!r}")
            candidates.append(op.value)
            target["router"] = "llm"
    return data


def _structure(
    layers: list[dict[str, Any]], target: dict[str, Any], op: AddLayer | RemoveLayer | MoveLayer, where: str,
    max_agents: int,
) -> None:  # fmt: skip
    if isinstance(op, AddLayer):
        if len(op.layer.agents) > max_agents:
            raise ConfigError(f"{where}: the new layer has {len(op.layer.agents)} agents (at most {max_agents})")
        if any(entry.get("name") == op.layer.name for entry in layers):
            raise ConfigError(f"{where}: the team already has a layer {op.layer.name!r}")
        inherit = {k: v for k, v in target["agents"][0].items() if k not in ("name", "role", "instructions")}
        new: dict[str, Any] = {
            "name": op.layer.name,
            "agents": [{**a.model_dump(), **inherit} for a in op.layer.agents],
            "fusion": op.layer.fusion,
        }
        if op.layer.input_title:
            new["input_title"] = op.layer.input_title
        at = layers.index(target) + 1 if target in layers else len(layers)
        layers.insert(at, new)
        return
    name = op.layer or target["name"]
    found = [entry for entry in layers if entry.get("name") == name]
    if not found:
        known = ", ".join(str(e.get("name")) for e in layers)
        raise ConfigError(f"{where}: the team has no layer {name!r} (it has {known})")
    if isinstance(op, RemoveLayer):
        if len(layers) == 1:
            raise ConfigError(f"{where}: cannot remove {name!r}, the team's only layer")
        layers.remove(found[0])
        return
    if op.position > len(layers):
        raise ConfigError(f"{where}: position {op.position} is past the team's {len(layers)} layers")
    layers.remove(found[0])
    layers.insert(op.position - 1, found[0])


def copy_spec(value: Any) -> Any:
    """A copy of spec data: containers copied, leaves (strings, model objects) shared."""
    if isinstance(value, dict):
        return {k: copy_spec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_spec(v) for v in value]
    return value


def _agent(agents: list[dict[str, Any]], name: str, where: str, layer: str) -> dict[str, Any]:
    for agent in agents:
        if agent.get("name") == name:
            return agent
    known = ", ".join(str(a.get("name")) for a in agents)
    raise ConfigError(f"{where}: layer {layer!r} has no agent {name!r} (it has {known})")
