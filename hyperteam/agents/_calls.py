"""How the optimizer, the router and the refiner call models: like agents, traced and counted.

Every call renders a template of ``prompts/optim.yaml``, goes through the
run's runtime (so the response cache and the endpoint limits apply), and
comes back as an ``AgentOutput`` plus a ``TraceEvent`` carrying its usage.
Delimited parts of the reply are read with :func:`between`, which says when
the delimiters are missing instead of guessing.
"""

from __future__ import annotations

import re
from typing import Any

from hyperteam.agents.messages import AgentOutput, TraceEvent
from hyperteam.agents.parsing import extract_answer
from hyperteam.models.types import ChatModel, ChatRequest
from hyperteam.prompts import render

_TRACE_INPUT_CHARS = 2000


async def ask(
    model: ChatModel,
    who: str,
    template: str,
    *,
    layer: str,
    max_tokens: int | None = None,
    extra: dict[str, Any] | None = None,
    json_schema: dict[str, Any] | None = None,
    system: tuple[str, str] = ("optim", "system"),
    **variables: Any,
) -> tuple[AgentOutput, TraceEvent]:
    """Calls ``model`` with the optimizer's system prompt and template ``template``.

    Raises:
        ModelError: the call failed after retries (callers decide what a failed step means).
    """
    prompt = render("optim", template, **variables)
    messages = [{"role": "system", "content": render(*system)}, {"role": "user", "content": prompt}]
    request = ChatRequest(
        messages, temperature=0.0, max_tokens=max_tokens, extra=dict(extra or {}), json_schema=json_schema
    )
    result = await model.chat(request)
    text = result.text
    finish = result.completions[0].finish_reason if result.completions else None
    out = AgentOutput(
        who, text, extract_answer(text) if template == "revise" else None, result.usage, finish_reason=finish
    )
    return out, TraceEvent.of(layer, prompt[:_TRACE_INPUT_CHARS], out, kind=template)


def between(text: str, tag: str) -> str | None:
    """The text inside the last ``<tag>...</tag>`` pair, stripped; None when there is none."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    return found[-1].strip() if found else None


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a sentence or word end where possible."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: max(limit - 1, 0)]
    cut = max(head.rfind(". "), head.rfind("; "))
    if cut < limit // 2:
        cut = head.rfind(" ")
    return (head[: cut + 1] if cut > 0 else head).rstrip() + "…"
