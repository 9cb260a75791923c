"""Mixture-of-Agents aggregation: an LLM reads every output and writes one answer."""

from __future__ import annotations

from hyperteam.agents.messages import AgentOutput
from hyperteam.agents.parsing import extract_answer
from hyperteam.errors import ModelError
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult, prompt_messages
from hyperteam.fusion.vote import majority_fallback, no_answer
from hyperteam.models.types import ChatRequest
from hyperteam.prompts import render


class LLMSynthesize(Fusion):
    """An aggregator model synthesises the agents' outputs into one (Wang et al. 2024, MoA).

    With a single output there is nothing to synthesise and no call is made.
    If the aggregator's call fails, the layer falls back to a majority vote
    and says so in the trace.

    Args:
        model: the aggregator's model spec; None is the team's default model.
        instructions: the last line of the aggregator's prompt (the answer format).
        temperature: the aggregator's sampling temperature (None: the server's default).

    Example:
        >>> import hyperteam as ht
        >>> solvers = [ht.Agent(name=f"s{i}") for i in range(3)]
        >>> layer = ht.Layer("solve", agents=solvers, fusion={"name": "llm_synthesize", "model": "sim:0.9"})
    """

    name = "llm_synthesize"

    model: str | None = None
    instructions: str = 'End with a final line "#### <answer>".'
    temperature: float | None = None

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        ok = [o for o in outputs if o.ok]
        if len(ok) == 1:
            only = ok[0]
            return FusionResult(
                AgentOutput(f"{ctx.layer}.synthesize", only.text, only.answer), "a single output: passed through"
            )
        if not ok:
            return no_answer(ctx.layer, "synthesize", outputs)
        prompt = render("fusion", "synthesize", task=task, outputs=ok, instructions=self.instructions)
        messages = prompt_messages(prompt)
        try:
            result = await ctx.model(self.model).chat(ChatRequest(messages, temperature=self.temperature))
        except ModelError as exc:
            return majority_fallback(ctx.layer, "synthesize", ok, f"aggregator failed ({exc.kind})", error=str(exc))
        text = result.text
        return FusionResult(
            AgentOutput(f"{ctx.layer}.synthesize", text, extract_answer(text), result.usage),
            f"synthesised from {len(ok)} outputs",
            {"candidates": [o.answer for o in ok]},
        )
