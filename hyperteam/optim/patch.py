"""The updater's output: a structured patch of one layer, parsed strictly and applied all at once.

A patch is JSON ``{"ops": [...]}`` between ``<patch>`` and ``</patch>`` (a
bare JSON object is accepted too, for endpoints asked for JSON output).
Operations: ``set_role``, ``set_instructions``, ``set_fusion``,
``add_agent``, ``remove_agent``, ``add_candidate``. Parsing and applying
either succeed for the whole patch or raise with the reason; the team is
then validated against its schema by the caller before anything changes.

Example:
    >>> parse_patch('<patch>{"ops": [{"op": "set_fusion", "value": "llm_select"}]}</patch>').ops[0].op
    'set_fusion'
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperteam.agents._calls import between
from hyperteam.errors import ConfigError, ParseError

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


Op = Annotated[SetText | SetFusion | AddAgent | RemoveAgent | AddCandidate, Field(discriminator="op")]


class Patch(BaseModel):
    """One layer's update: one to five operations, applied in order."""

    model_config = ConfigDict(extra="forbid")

    ops: list[Op] = Field(min_length=1, max_length=5)

    def describe(self) -> str:
        """The patch as JSON text, as stored in reports and histories."""
        return json.dumps(self.model_dump(mode="json")["ops"], ensure_ascii=False)


def parse_patch(text: str) -> Patch:
    """The patch in an updater's reply.

    Raises:
        ParseError: no delimited JSON, invalid JSON, or JSON that is not a patch (says which field).
    """
    body = between(text, "patch")
    if body is None:
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            raise ParseError("the updater's reply has no <patch>...</patch> block")
        body = stripped
    body = body.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"the patch is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    try:
        return Patch.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ParseError(f"the patch does not fit the schema: {where or 'patch'}: {first['msg']}") from None


def apply_patch(spec: dict[str, Any], layer: str, patch: Patch, *, max_agents: int = 7) -> dict[str, Any]:
    """A copy of the team spec ``spec`` with ``patch`` applied to layer ``layer``.

    New agents inherit the model and sampling settings of the layer's first
    agent. Adding a candidate aggregator turns the layer's LLM router on,
    since a candidate is only ever used through the router.

    Raises:
        ConfigError: an operation names an agent the layer lacks, or the layer would exceed ``max_agents``.
    """
    data = copy_spec(spec)
    found = [entry for entry in data.get("layers", []) if entry.get("name") == layer]
    if not found:
        raise ConfigError(f"the team has no layer {layer!r}")
    target = found[0]
    agents: list[dict[str, Any]] = target["agents"]
    for i, op in enumerate(patch.ops):
        where = f"op {i} ({op.op})"
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
