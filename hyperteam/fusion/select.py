"""Universal self-consistency: a model reads every response and picks the most consistent one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperteam.agents.messages import AgentOutput
from hyperteam.errors import ModelError
from hyperteam.fusion._parse import parse_index, tagged_line
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult, prompt_messages
from hyperteam.fusion.vote import majority_fallback, no_answer
from hyperteam.models.types import ChatRequest, ChatResult
from hyperteam.prompts import render

if TYPE_CHECKING:
    from hyperteam.fusion.judge import Judge


def candidates(outputs: list[AgentOutput]) -> list[AgentOutput]:
    """The outputs a selector or judge may choose from: no error and some text.

    An answer is not required, so free-form responses can be chosen too.
    """
    return [o for o in outputs if o.ok and o.text.strip()]


def open_choice(
    layer: str, name: str, outputs: list[AgentOutput]
) -> tuple[list[AgentOutput], dict, FusionResult | None]:
    """The candidates, what to record of them, and the result when there is nothing to choose between.

    With no candidate there is no answer; with one it passes through without a model call.
    """
    pool = candidates(outputs)
    if not pool:
        return pool, {}, no_answer(layer, name, outputs)
    seen = {"candidates": [{"agent": o.agent, "answer": o.answer} for o in pool]}
    if len(pool) == 1:
        only = pool[0]
        out = AgentOutput(f"{layer}.{name}", only.text, only.answer)
        return pool, seen, FusionResult(out, "a single candidate: passed through", seen)
    return pool, seen, None


async def ask_chooser(
    fusion: LLMSelect | Judge, ctx: FusionContext, prompt: str, pool: list[AgentOutput], seen: dict[str, Any], role: str
) -> ChatResult | FusionResult:
    """Calls the selecting (or judging) model; a failed call becomes a majority-vote fallback result."""
    request = ChatRequest(prompt_messages(prompt), temperature=fusion.temperature)
    try:
        return await ctx.model(fusion.model).chat(request)
    except ModelError as exc:
        return majority_fallback(ctx.layer, fusion.name, pool, f"{role} failed ({exc.kind})", error=str(exc), **seen)


class LLMSelect(Fusion):
    """A selector model names the most consistent response, which is returned verbatim (Chen et al. 2023).

    Universal self-consistency: unlike a vote it needs no answer extraction,
    and unlike synthesis it never rewrites a response. The selector must end
    with a line ``Selected: <k>`` (the last such line counts); if that line is
    missing, unparseable or out of range, or the call fails, the strategy
    falls back to a majority vote and records why in ``reason`` and
    ``detail["fallback"]``. A single candidate is passed through without a call.

    Args:
        model: the selector's model spec; None is the team's default model.
        temperature: the selector's sampling temperature (None: the server's default).

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion={"name": "llm_select", "temperature": 0.0})
    """

    name = "llm_select"

    model: str | None = None
    temperature: float | None = None

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        pool, seen, early = open_choice(ctx.layer, self.name, outputs)
        if early is not None:
            return early
        prompt = render("fusion", "select", task=task, outputs=pool)
        result = await ask_chooser(self, ctx, prompt, pool, seen, "selector")
        if isinstance(result, FusionResult):
            return result
        tag = f"{ctx.layer}.{self.name}"
        line = tagged_line(result.text, "Selected")
        k = parse_index(line, len(pool))
        if k is None:
            why = "selector named no response" if line is None else f"selector's choice {line!r} is not 1..{len(pool)}"
            return majority_fallback(
                ctx.layer, self.name, pool, why, usage=result.usage, selector=result.text[-500:], **seen
            )
        chosen = pool[k]
        return FusionResult(
            AgentOutput(tag, chosen.text, chosen.answer, result.usage),
            f"the selector chose response {k + 1} of {len(pool)} ({chosen.agent})",
            {"selected": k + 1, "agent": chosen.agent, **seen},
        )
