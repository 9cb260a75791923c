"""Sequential refinement: each agent checks and improves the previous agent's solution."""

from __future__ import annotations

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import no_answer
from hyperteam.models.types import Usage
from hyperteam.prompts import render


class Chain(Fusion):
    """The layer's agents work one after another: the first solves, each next one checks and improves.

    The chain runs the agents itself (``drives_agents``), in layer order; the
    ``outputs`` a layer hands it are empty. The first agent gets the task and
    the layer input, as in a parallel layer; each next agent also gets the
    latest good solution, titled ``title``. An agent whose call fails is
    skipped: the next one gets the last good solution (or, if there is none
    yet, solves from scratch). The final output is the last good one; with
    none, the answer is None. Every call is in ``events``.

    Args:
        title: how the solution to improve is titled in each next agent's prompt.

    Example:
        >>> import hyperteam as ht
        >>> roles = ["drafter", "checker", "editor"]
        >>> layer = ht.Layer("refine", agents=[ht.Agent(name=r, role=r) for r in roles], fusion="chain")
    """

    name = "chain"
    drives_agents = True

    title: str = "Work so far"

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        events: list[TraceEvent] = []
        outs: list[AgentOutput] = []
        steps: list[dict[str, str | None]] = []
        good: AgentOutput | None = None
        for agent in ctx.agents:
            if good is None:
                context, title = ctx.layer_input, ctx.input_title
            else:
                title = self.title
                context = render(
                    "fusion",
                    "chain",
                    previous=good,
                    layer_input=ctx.layer_input,
                    input_title=ctx.input_title or "Input",
                )
            out = await ctx.ask(agent, task, context, title)
            events.append(TraceEvent.of(ctx.layer, context or task, out, detail={"step": len(steps) + 1}))
            outs.append(out)
            steps.append({"agent": agent.name, "answer": out.answer, "error": out.error})
            if out.ok:
                good = out
        if good is None:
            result = no_answer(ctx.layer, self.name, outs, steps=steps)
            result.events = events
            return result
        failed = [s["agent"] for s in steps if s["error"]]
        reason = f"refined by {len(steps) - len(failed)} agents in turn; the last good output is {good.agent}'s"
        if failed:
            reason += f" ({', '.join(str(a) for a in failed)} failed)"
        output = AgentOutput(f"{ctx.layer}.{self.name}", good.text, good.answer, Usage())
        return FusionResult(output, reason, {"steps": steps, "final": good.agent}, events)
