"""Mixture-of-Agents aggregation: an LLM reads every output and writes one answer."""

from __future__ import annotations

from hyperteam.agents.messages import AgentOutput
from hyperteam.agents.parsing import extract_answer
from hyperteam.errors import ModelError
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import plurality
from hyperteam.models.types import ChatRequest
from hyperteam.prompts import render


class LLMSynthesize(Fusion):
    """An aggregator model synthesises the agents' outputs into one (Wang et al. 2024, MoA).

    With a single output there is nothing to synthesise and no call is made.
    If the aggregator's call fails, the layer falls back to a majority vote
    and says so in the trace.
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
            return FusionResult(AgentOutput(f"{ctx.layer}.synthesize", "", None), "every agent failed")
        prompt = render("fusion", "synthesize", task=task, outputs=ok, instructions=self.instructions)
        messages = [{"role": "user", "content": prompt}]
        try:
            result = await ctx.model(self.model).chat(ChatRequest(messages, temperature=self.temperature))
        except ModelError as exc:
            winner, votes = plurality(ok)
            chosen = next((o for o in ok if o.answer == winner), ok[0])
            return FusionResult(
                AgentOutput(f"{ctx.layer}.synthesize", chosen.text, winner),
                f"aggregator failed ({exc.kind}); fell back to majority vote",
                {"votes": votes, "error": str(exc)},
            )
        text = result.text
        return FusionResult(
            AgentOutput(f"{ctx.layer}.synthesize", text, extract_answer(text), result.usage),
            f"synthesised from {len(ok)} outputs",
            {"candidates": [o.answer for o in ok]},
        )
