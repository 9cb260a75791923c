"""What a training run will cost, estimated before it starts: calls and tokens per epoch.

Calls are counted from the team's structure (agents per layer, aggregators
that call a model, routers, refinement) and the trainer's settings. Tokens
use the project's deterministic approximate tokenizer on a real prompt of
the team (no tiktoken: its encodings download at run time) plus an assumed
completion length, so they are an order of magnitude, not an invoice.
Full validations run only for patches that beat the current team on a
validation minibatch, so the estimate gives a range: none of them to one
per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperteam.fusion import get_fusion

if TYPE_CHECKING:
    from hyperteam.topologies.layered import LayeredTeam

COMPLETION_TOKENS = 250  # a short chain of thought; optimizer replies are bounded similarly
OPTIMIZER_PROMPT_TOKENS = 1500  # structure, trace slices and gradients, bounded by the loss's limits


@dataclass(slots=True)
class CostEstimate:
    """Estimated calls and tokens per epoch; ``*_max`` adds a full validation at every step."""

    steps: int
    team_calls_per_problem: int
    calls: int
    calls_max: int
    tokens: int
    tokens_max: int
    initial_calls: int
    initial_tokens: int

    def describe(self) -> str:
        return (
            f"cost estimate per epoch: {self.steps} steps, {self.calls:,}-{self.calls_max:,} calls, "
            f"~{self.tokens:,}-{self.tokens_max:,} tokens ({self.team_calls_per_problem} team calls per problem; "
            f"the upper figure adds a full validation at every step); "
            f"initial validation: {self.initial_calls:,} calls, ~{self.initial_tokens:,} tokens"
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def team_calls_per_problem(team: LayeredTeam) -> int:
    """Model calls of one run of the team, at most (debates counted at their round limit)."""
    calls = 0
    for layer in team.layers:
        n = len(layer.agents)
        fusion = get_fusion(layer.fusion)
        extra = {"llm_synthesize": 1, "llm_select": 1, "judge": 1, "ranked_vote": n}.get(fusion.name, 0)
        if fusion.name == "debate":
            extra = n * (getattr(fusion, "max_rounds", 3) - 1)
        calls += n + extra  # a fusion that drives its agents (chain) still calls each once
        calls += 1 if layer.router == "llm" and layer.candidates else 0
        calls += 2 * layer.refine
    return calls + 2 * team.refine


def estimate(
    team: LayeredTeam, sample_question: str, *, train: int, val: int, batch: int, val_batch: int
) -> CostEstimate:
    """The estimate for ``train``/``val`` problems, ``batch`` per step, on a team like ``team``."""
    from hyperteam.models.tokenizer import count_message_tokens  # the approximate tokenizer, no downloads

    per_problem = team_calls_per_problem(team)
    agent = team.layers[0].agents[0]
    call_tokens = count_message_tokens(agent.messages(sample_question)) + COMPLETION_TOKENS
    steps = math.ceil(train / batch)
    depth = len(team.layers)
    # per step: evaluator (at most one per problem), global gradient, one local gradient and one
    # update per layer, and a summary when a gradient runs over its bound
    optimizer_calls = batch + 1 + depth + depth + (1 + depth)
    team_calls = batch * per_problem + val_batch * per_problem
    full_val = max(val - val_batch, 0) * per_problem
    calls = steps * (optimizer_calls + team_calls)
    tokens = steps * (optimizer_calls * (OPTIMIZER_PROMPT_TOKENS + COMPLETION_TOKENS) + team_calls * call_tokens)
    return CostEstimate(
        steps=steps,
        team_calls_per_problem=per_problem,
        calls=calls,
        calls_max=calls + steps * full_val,
        tokens=tokens,
        tokens_max=tokens + steps * full_val * call_tokens,
        initial_calls=val * per_problem,
        initial_tokens=val * per_problem * call_tokens,
    )
