"""The optimizer: turns each layer's textual gradient into a validated patch (ANN's update step).

``TextualGradientDescent`` is torch's ``optim.SGD`` for team specs: it holds
the team, and ``await optimizer.step()`` asks an updater model, once per
layer that has a gradient, for a structured patch (see
:mod:`hyperteam.optim.patch`); a patch may also add, remove or move layers.
Each layer keeps a short momentum history: past gradients, the patch each
led to, its outcome (kept, reverted or malformed) and the validation change,
shown to the updater so that it does not repeat a reverted change. A reply
that cannot be used is asked for once more with the error quoted; a patch
that still does not parse, names what is not there, or makes an invalid
team is rejected and recorded with its reason; valid patches are applied to
the team in place. The trainer then calls :meth:`record_outcome` with the
validation verdict.

Structured output: with ``structured="auto"`` (the default) the first update
call to each model asks for the patch schema (``json_schema``); a model whose
reply is pure JSON honours it and keeps getting it, any other (an error, or
prose) is remembered as not honouring it and asked in plain text from then on.

Example:
    >>> opt = TextualGradientDescent(team, model="sim:0.7", momentum=3)   # doctest: +SKIP
    >>> loss = await loss_fn(team, examples); await loss.backward()      # doctest: +SKIP
    >>> records = await opt.step(); opt.zero_grad()                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from hyperteam.agents._calls import ask, clip
from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.errors import ConfigError, ModelError, ParseError
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel, Usage
from hyperteam.optim.patch import OP_NAMES, Patch, apply_patch, copy_spec, parse_patch
from hyperteam.topologies.io import team_from_dict
from hyperteam.topologies.layered import LayeredTeam
from hyperteam.topologies.team import Team

log = logging.getLogger(__name__)

# Aggregators the updater may choose; "adaptive" and "confidence_vote" need
# state or logprobs that a patch cannot provide, so they are left out.
UPDATE_FUSIONS = ("majority_vote", "llm_synthesize", "llm_select", "judge", "ranked_vote", "debate", "chain", "collect")


@dataclass(slots=True)
class PatchRecord:
    """What happened to one layer's update at one step.

    ``status``: ``applied`` (valid, now in the team), ``rejected`` (malformed
    or invalid: ``reason`` says why; never applied). ``accepted``: the
    trainer's validation verdict on an applied patch (None until known).
    """

    step: int
    layer: str
    status: Literal["applied", "rejected"]
    text: str
    reason: str = ""
    accepted: bool | None = None
    notes: list[str] = field(default_factory=list)
    retried: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Moment:
    """One entry of a layer's momentum history: the gradient, the patch it led to, and how that went.

    ``outcome``: ``kept`` or ``reverted`` (the validation verdict), ``malformed`` (no usable
    patch), None until known. ``val_change``: the validation score after minus before.
    """

    step: int
    gradient: str
    patch: str = ""
    outcome: Literal["kept", "reverted", "malformed"] | None = None
    val_change: float | None = None

    @property
    def accepted(self) -> bool | None:
        """Whether the update was kept (False for reverted and malformed ones; None until known)."""
        return None if self.outcome is None else self.outcome == "kept"


class TextualGradientDescent:
    """Applies textual gradients to a layered team as validated patches, with per-layer momentum.

    Args:
        team: the team to update in place.
        model: the updater's model (spec or chat model); None: the runtime's default.
        runtime: clients and cache for the calls; default: the event loop's runtime.
        momentum: how many past gradients per layer the updater sees.
        max_agents: the most agents a patch may leave in a layer.
        structured: ``"auto"`` probes each model once with the patch schema and keeps using it where
            it is honoured (see above); ``"json_schema"`` always constrains the reply to the patch
            schema (``ChatRequest.json_schema``: vLLM ``structured_outputs``, OpenAI ``response_format``);
            ``"json_object"`` sends ``response_format={"type": "json_object"}``; None relies on the
            ``<patch>`` delimiters.
        ops: the operations the updater may use (default: all of :data:`~hyperteam.optim.patch.OP_NAMES`);
            ``("set_role", "set_instructions")`` learns prompts only.

    Example:
        >>> import hyperteam as ht
        >>> opt = TextualGradientDescent(ht.load_team("ann-gsm8k"), model="sim:0.7")
    """

    def __init__(
        self,
        team: Team,
        *,
        model: str | ChatModel | None = None,
        runtime: Runtime | None = None,
        momentum: int = 3,
        max_agents: int = 7,
        structured: Literal["auto", "json_schema", "json_object"] | None = "auto",
        ops: Sequence[str] = OP_NAMES,
    ) -> None:
        unknown = [op for op in ops if op not in OP_NAMES]
        if unknown or not ops:
            raise ConfigError(f"ops must be some of {', '.join(OP_NAMES)}; got {', '.join(unknown) or 'none'}")
        if not isinstance(team, LayeredTeam):
            raise ConfigError(f"textual backprop trains layered teams; {team.name!r} is a {type(team).__name__}")
        if momentum < 0:
            raise ConfigError(f"momentum must be >= 0, got {momentum}")
        self.team = team
        self.model = model
        self.runtime = runtime
        self.momentum = momentum
        self.max_agents = max_agents
        self.structured = structured
        self.ops = tuple(ops)
        self.steps = 0
        self.history: dict[str, deque[Moment]] = {}
        self.records: list[PatchRecord] = []
        self.usage = Usage()
        self.last_events: list[TraceEvent] = []
        # model name -> whether it honours json_schema; probed on the first update call
        self.honours_schema: dict[str, bool] = {}

    def zero_grad(self) -> None:
        self.team.zero_grad()

    async def step(self) -> list[PatchRecord]:
        """One update: a patch per layer with a gradient; the valid ones are applied to the team."""
        self.steps += 1
        self.last_events = []
        model = (self.runtime or Runtime.current()).model(self.model)
        grads = {p.layer: p.grad for _, p in self.team.named_parameters() if p.grad}
        spec = snapshot(self.team)
        records: list[PatchRecord] = []
        for layer in self.team.layers:
            gradient = grads.get(layer.name)
            if not gradient or not any(e["name"] == layer.name for e in spec["layers"]):
                continue  # no gradient, or an earlier patch of this step removed the layer
            past = list(self.history.get(layer.name, ()))
            moments = self.history.setdefault(layer.name, deque(maxlen=self.momentum or None))
            moment = Moment(self.steps, gradient)
            if self.momentum:
                moments.append(moment)
            record, patched = await self._update(model, spec, layer.name, gradient, past)
            if patched is not None:
                spec = patched  # the next layer's patch builds on this one
                moment.patch = record.text
            else:
                moment.outcome, moment.patch = "malformed", record.reason
            records.append(record)
        if any(r.status == "applied" for r in records):
            restore(self.team, spec)
        self.records.extend(records)
        return records

    async def _update(
        self, model: ChatModel, spec: dict[str, Any], layer: str, gradient: str, past: list[Moment]
    ) -> tuple[PatchRecord, dict[str, Any] | None]:
        variables = {
            "spec": json.dumps(layer_spec(spec, layer), ensure_ascii=False), "gradient": gradient, "history": past,
            "fusions": UPDATE_FUSIONS, "max_agents": self.max_agents, "layers": [e["name"] for e in spec["layers"]],
            "ops": self.ops,
        }  # fmt: skip
        error = previous = ""
        for attempt in (1, 2):  # a reply that cannot be used is asked for once more, with the error quoted
            try:
                out = await self._ask(model, layer, variables, error=error, previous=previous)
            except ModelError as exc:
                reason = f"the updater's call failed: {exc.kind}: {exc}"
                return PatchRecord(self.steps, layer, "rejected", "", reason, retried=attempt > 1), None
            try:
                patch = parse_patch(out.text)
                refused = [f"op {i} ({op.op})" for i, op in enumerate(patch.ops) if op.op not in self.ops]
                if refused:
                    raise ParseError(f"{', '.join(refused)} not allowed: use only {', '.join(self.ops)}")
                candidate = apply_patch(spec, layer, patch, max_agents=self.max_agents)
                team_from_dict(candidate, source=f"patch of layer {layer!r}")
            except (ParseError, ConfigError) as exc:
                error, previous = str(exc), clip(out.text, 1500)
                continue
            record = PatchRecord(self.steps, layer, "applied", patch.describe(), notes=patch.notes)
            record.retried = attempt > 1
            return record, candidate
        return PatchRecord(self.steps, layer, "rejected", previous, error, retried=True), None

    async def _ask(
        self, model: ChatModel, layer: str, variables: dict[str, Any], *, error: str, previous: str
    ) -> AgentOutput:
        name = getattr(model, "name", type(model).__name__)
        probe = self.structured == "auto" and name not in self.honours_schema
        use_schema = self.structured == "json_schema" or (
            self.structured == "auto" and self.honours_schema.get(name, True)
        )
        extra = {"response_format": {"type": "json_object"}} if self.structured == "json_object" else None
        schema = Patch.model_json_schema() if use_schema else None
        try:
            out, event = await ask(
                model, "optim.updater", "update", layer=layer, target=layer, extra=extra, json_schema=schema,
                error=error, previous=previous, **variables,
            )  # fmt: skip
        except ModelError as exc:
            if not probe or exc.status is None or not 400 <= exc.status < 500 or exc.status in (401, 403, 429):
                raise  # only a refused request (400, 422, ...) says the schema is not understood
            log.info("updater model %s refused the patch schema (%s): plain text from now on", name, exc)
            self.honours_schema[name] = False
            return await self._ask(model, layer, variables, error=error, previous=previous)
        if probe:
            honours = out.text.strip().startswith(("{", "["))
            self.honours_schema[name] = honours
            log.info("updater model %s %s the patch schema", name, "honours" if honours else "ignores")
        self.last_events.append(event)
        self.usage = self.usage + event.usage
        return out

    def record_outcome(self, accepted: bool, *, val_change: float | None = None) -> None:
        """Tells the optimizer whether the last step's applied patches were kept (for the momentum)."""
        for record in self.records:
            if record.step == self.steps and record.status == "applied":
                record.accepted = accepted
        for moments in self.history.values():
            for moment in moments:
                if moment.step == self.steps and moment.outcome is None:
                    moment.outcome = "kept" if accepted else "reverted"
                    moment.val_change = val_change

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (step count, momentum, records, usage), JSON-ready."""
        return {
            "steps": self.steps,
            "history": {k: [asdict(m) for m in v] for k, v in self.history.items()},
            "records": [r.to_dict() for r in self.records],
            "usage": self.usage.to_dict(),
            "honours_schema": dict(self.honours_schema),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.history = {
            k: deque((_moment(m) for m in v), maxlen=self.momentum or None) for k, v in state["history"].items()
        }
        self.records = [PatchRecord(**r) for r in state["records"]]
        self.honours_schema = dict(state.get("honours_schema", {}))
        u = state["usage"]
        self.usage = Usage(u["prompt_tokens"], u["completion_tokens"], u["calls"], u["latency_s"])


def _moment(data: dict[str, Any]) -> Moment:
    data = dict(data)
    if "accepted" in data:  # a checkpoint written before momentum carried outcomes
        accepted = data.pop("accepted")
        data["outcome"] = None if accepted is None else "kept" if accepted else "reverted"
    return Moment(**data)


def snapshot(team: Team) -> dict[str, Any]:
    """The team's spec as data; model objects (test doubles) are kept by reference, not copied."""
    return copy_spec(team.model_dump(mode="python"))


def restore(team: Team, spec: dict[str, Any]) -> None:
    """Makes ``team`` equal to the spec ``spec`` (validated first), in place."""
    new = team_from_dict(copy_spec(spec), source=f"team {team.name!r}")
    for name in type(team).model_fields:
        if getattr(team, name) != getattr(new, name):
            setattr(team, name, getattr(new, name))


def layer_spec(spec: dict[str, Any], layer: str) -> dict[str, Any]:
    """What the updater sees of a layer: names, roles, instructions and aggregators."""
    entry = next(e for e in spec["layers"] if e["name"] == layer)
    agents = [
        {"name": a["name"], "role": a.get("role", ""), "instructions": a.get("instructions", "")}
        for a in entry["agents"]
    ]
    return {"name": layer, "fusion": entry.get("fusion"), "candidates": entry.get("candidates", []), "agents": agents}
