"""Passing every output on: the intermediate layers of Mixture-of-Agents."""

from __future__ import annotations

from hyperteam.agents.messages import AgentOutput
from hyperteam.fusion.base import Fusion, FusionContext, FusionResult
from hyperteam.fusion.vote import plurality


class Collect(Fusion):
    """Hands all the agents' outputs, numbered, to the next layer (Wang et al. 2024, MoA).

    Nothing is decided here: the next layer's agents read every response (the
    same bytes for each of them, so a prefix cache shares it). The layer's own
    answer, for traces and for a last layer, is the plurality answer (ties:
    the earliest agent).

    Example:
        >>> layer = Layer("propose", agents=[...], fusion="collect")  # doctest: +SKIP
    """

    name = "collect"

    async def fuse(self, task: str, outputs: list[AgentOutput], ctx: FusionContext) -> FusionResult:
        ok = [o for o in outputs if o.ok]
        text = "\n\n".join(f"[{i}] {o.text.strip()}" for i, o in enumerate(ok, start=1))
        winner, votes = plurality(ok)
        reason = f"passed on {len(ok)} outputs" + (f"; plurality answer {winner}" if winner is not None else "")
        return FusionResult(AgentOutput(f"{ctx.layer}.collect", text, winner), reason, {"votes": votes})
