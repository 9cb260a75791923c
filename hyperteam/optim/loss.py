"""The loss and the backward pass of textual backpropagation (ANN, arXiv 2506.09046, section 3.2).

``EvaluatorLoss`` turns a minibatch of team runs into a :class:`Loss`: the
exact-match score and, for each wrong answer, an evaluator's textual
feedback. ``await loss.backward()`` then computes

1. the global gradient: one optimizer call reads the team's structure and
   the wrong runs and says which layers and links failed;
2. the local gradients, last layer first: per layer, from its slice of the
   traces, the global gradient and the gradient of the layer above it.

Every gradient is bounded to ``max_chars``: a longer one is summarised by
one more call, and clipped if the summary is still too long, so nothing
grows without limit however many steps run. Each layer's local gradient is
set as ``grad`` on every parameter of that layer.

Example:
    >>> loss_fn = EvaluatorLoss(model="sim:0.7")
    >>> loss = await loss_fn(team, examples)              # doctest: +SKIP
    >>> grads = await loss.backward()                     # doctest: +SKIP
    >>> team.named_parameters()[0][1].grad                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hyperteam.agents._calls import ask, between, clip
from hyperteam.agents.messages import TraceEvent
from hyperteam.errors import ConfigError
from hyperteam.models.runtime import Runtime
from hyperteam.models.types import ChatModel, Usage

if TYPE_CHECKING:
    from hyperteam.topologies.layered import LayeredTeam
    from hyperteam.topologies.result import TeamResult

_TRACE_CHARS = 3000  # a layer's trace slice in one gradient prompt
_STEP_CHARS = 400  # the end of one agent output inside a trace slice
_FINAL_CHARS = 600  # the end of the final reasoning shown to the evaluator
_LAYER_TAIL_CHARS = 300  # the end of each layer's fused output shown to the evaluator


@dataclass(slots=True)
class Example:
    """One training problem and what the team did on it."""

    question: str
    gold: str
    result: TeamResult

    @property
    def correct(self) -> bool:
        return self.result.answer == self.gold


@dataclass(slots=True)
class Gradients:
    """What ``backward()`` computed: the global gradient and each layer's local gradient."""

    global_: str = ""
    layers: dict[str, str] = field(default_factory=dict)


class EvaluatorLoss:
    """The loss function: exact match plus an evaluator's textual feedback on each wrong answer.

    Right answers get the fixed feedback "correct" without a call: the
    gradient is about what failed, and the calls go where they teach something.

    Args:
        model: the evaluator's and optimizer's model (a spec or a chat model).
        runtime: the runtime whose clients and cache the calls use; default: the loop's.
        max_chars: the bound on each gradient's length, in characters.

    Example:
        >>> loss_fn = EvaluatorLoss(model="sim:0.7", max_chars=600)
    """

    def __init__(
        self, model: str | ChatModel | None = None, *, runtime: Runtime | None = None, max_chars: int = 800
    ) -> None:
        if max_chars < 100:
            raise ConfigError(f"max_chars must be >= 100, got {max_chars}")
        self.model = model
        self.runtime = runtime
        self.max_chars = max_chars

    def chat_model(self) -> ChatModel:
        return (self.runtime or Runtime.current()).model(self.model)

    async def __call__(self, team: LayeredTeam, examples: list[Example]) -> Loss:
        """Scores ``examples`` and asks the evaluator about each wrong one."""
        loss = Loss(self, team, examples)
        model = self.chat_model()
        for ex in examples:
            if ex.correct:
                loss.feedback.append("correct")
                continue
            out, event = await ask(
                model,
                "optim.evaluator",
                "evaluate",
                layer="optim",
                task=ex.question,
                gold=ex.gold,
                answer=ex.result.answer,
                trace=layer_answers(ex.result),
                tails=layer_tails(ex.result),
                final=tail(ex.result.text, _FINAL_CHARS),
            )
            loss.events.append(event)
            loss.feedback.append(clip(between(out.text, "feedback") or out.text, self.max_chars))
        return loss


@dataclass
class Loss:
    """A minibatch's loss: its score, the evaluator's feedback, and the calls made so far."""

    fn: EvaluatorLoss
    team: LayeredTeam
    examples: list[Example]
    feedback: list[str] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)
    gradients: Gradients | None = None

    @property
    def score(self) -> float:
        """Exact-match accuracy on the minibatch."""
        return sum(ex.correct for ex in self.examples) / len(self.examples) if self.examples else 0.0

    @property
    def value(self) -> float:
        return 1.0 - self.score

    @property
    def usage(self) -> Usage:
        total = Usage()
        for ev in self.events:
            total = total + ev.usage
        return total

    async def backward(self) -> Gradients:
        """Computes the global and local gradients and sets them on the team's parameters.

        With no wrong answer there is nothing to propagate: the gradients are empty.
        """
        grads = Gradients()
        self.gradients = grads
        wrong = [(ex, fb) for ex, fb in zip(self.examples, self.feedback, strict=True) if not ex.correct]
        if not wrong:
            return grads
        model = self.fn.chat_model()
        limit = self.fn.max_chars
        cases = [
            {"question": clip(ex.question, 600), "gold": ex.gold, "answer": ex.result.answer,
             "layers": layer_answers(ex.result), "feedback": fb, "final": tail(ex.result.text, _LAYER_TAIL_CHARS)}
            for ex, fb in wrong
        ]  # fmt: skip
        out, event = await ask(
            model, "optim.gradient", "global_gradient", layer="optim",
            structure=describe(self.team), examples=cases, limit=limit,
        )  # fmt: skip
        self.events.append(event)
        grads.global_ = await self._bounded(model, out.text)
        upper_name, upper = "", ""
        layers = self.team.layers
        for position in range(len(layers), 0, -1):
            layer = layers[position - 1]
            out, event = await ask(
                model, "optim.gradient", "local_gradient", layer=layer.name,
                target=layer.name, position=position, depth=len(layers), spec=describe_layer(layer),
                trace=layer_slice([ex.result for ex, _ in wrong], layer.name),
                global_gradient=grads.global_, upper=upper, upper_name=upper_name, limit=limit,
            )  # fmt: skip
            self.events.append(event)
            local = await self._bounded(model, out.text)
            grads.layers[layer.name] = local
            upper_name, upper = layer.name, local
        for _, param in self.team.named_parameters():
            if param.layer in grads.layers:
                param.grad = grads.layers[param.layer]
        return grads

    async def _bounded(self, model: ChatModel, text: str) -> str:
        """The delimited gradient, summarised by one more call if it is over the bound, then clipped."""
        limit = self.fn.max_chars
        gradient = " ".join((between(text, "gradient") or text).split())
        if len(gradient) > limit:
            out, event = await ask(model, "optim.summarizer", "summarize", layer="optim", text=gradient, limit=limit)
            self.events.append(event)
            gradient = between(out.text, "gradient") or out.text
        return clip(gradient, limit)


def describe(team: LayeredTeam) -> str:
    """The team's structure in a few lines per layer, for gradient prompts."""
    return "\n".join(f"Layer {i} {describe_layer(layer)}" for i, layer in enumerate(team.layers, start=1))


def describe_layer(layer: Any) -> str:
    fusion = layer.fusion if isinstance(layer.fusion, str) else layer.fusion.get("name")
    head = f"{layer.name!r}: aggregator {fusion}"
    if layer.candidates:
        head += f" (router {layer.router}, candidates: {', '.join(str(c) for c in layer.candidates)})"
    agents = [f"  - {a.name}: {a.role or 'no role'}. {a.instructions}".rstrip() for a in layer.agents]
    return "\n".join([head, *agents])


def layer_answers(result: TeamResult) -> str:
    """Each layer's agent answers and fused answer, on one line: ``solve: 18, 18, 20 -> 18 | verify: ...``."""
    parts: list[str] = []
    for name in dict.fromkeys(ev.layer for ev in result.trace):
        agents = [str(ev.answer) for ev in result.trace if ev.layer == name and ev.kind == "agent"]
        fused = [ev.answer for ev in result.trace if ev.layer == name and ev.kind == "fusion"]
        parts.append(f"{name}: {', '.join(agents)} -> {fused[-1] if fused else '?'}")
    return " | ".join(parts)


def tail(text: str, limit: int) -> str:
    """The end of ``text`` in at most ``limit`` characters, from a word start: where the error and answer are."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    end = text[len(text) - limit + 1 :]
    cut = end.find(" ")
    return "…" + (end[cut + 1 :] if 0 <= cut < limit // 2 else end)


def layer_tails(result: TeamResult) -> list[dict[str, str]]:
    """The end of each layer's fused output (or its last agent output), for the evaluator."""
    tails: list[dict[str, str]] = []
    for name in dict.fromkeys(ev.layer for ev in result.trace):
        events = [ev for ev in result.trace if ev.layer == name and ev.kind in ("agent", "fusion") and ev.output]
        fused = [ev for ev in events if ev.kind == "fusion"]
        chosen = fused[-1] if fused else events[-1] if events else None
        if chosen is not None:
            tails.append({"layer": name, "text": tail(chosen.output, _LAYER_TAIL_CHARS)})
    return tails


def layer_slice(results: list[TeamResult], layer: str) -> str:
    """The layer's part of each trace: its input, the end of each agent's output, its fusion's choice; bounded."""
    blocks: list[str] = []
    used = 0
    for i, result in enumerate(results, start=1):
        lines = [f"[{i}]"]
        for ev in result.trace:
            if ev.layer != layer:
                continue
            if ev.kind == "agent":
                lines.append(f"{ev.agent} -> {ev.answer}: {tail(ev.output, _STEP_CHARS)}")
            elif ev.kind == "fusion":
                lines.append(f"aggregator {ev.detail.get('strategy')} -> {ev.answer} ({ev.detail.get('reason', '')})")
            elif ev.kind == "route":
                lines.append(f"router chose {ev.detail.get('choice')}: {ev.detail.get('reason', '')}")
        block = "\n".join(lines)
        if used + len(block) > _TRACE_CHARS:
            blocks.append(f"... ({len(results) - i + 1} more problems left out)")
            break
        blocks.append(block)
        used += len(block)
    return "\n".join(blocks)
