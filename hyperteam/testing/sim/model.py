"""The simulated model in-process: a ``ChatModel`` that answers through a ``SimBrain``."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from functools import lru_cache

from hyperteam.errors import ConfigError
from hyperteam.models.tokenizer import count_message_tokens, count_tokens, truncate_tokens
from hyperteam.models.types import ChatRequest, ChatResult, Completion, Usage
from hyperteam.testing.sim.brain import SimBrain
from hyperteam.testing.sim.worlds import get_world

__all__ = ["LatencyModel", "SimModel", "brain_for"]


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long a completion takes: time to first token plus a time per token.

    Example:
        >>> LatencyModel(ttft_ms=150, per_token_ms=3).seconds(100)
        0.45
    """

    ttft_ms: float = 150.0
    per_token_ms: float = 3.0

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.per_token_ms < 0:
            raise ConfigError(f"latency must be >= 0 ms, got ttft {self.ttft_ms} and per token {self.per_token_ms}")

    def seconds(self, completion_tokens: int) -> float:
        """Returns the service time of a completion of ``completion_tokens`` tokens."""
        return (self.ttft_ms + self.per_token_ms * completion_tokens) / 1000.0

    @property
    def is_zero(self) -> bool:
        return self.ttft_ms == 0 and self.per_token_ms == 0


@lru_cache(maxsize=8)
def _brain_for(data_dir: str | None) -> SimBrain:
    return SimBrain(data_dir=data_dir)


def brain_for(data_dir: str | os.PathLike[str] | None = None) -> SimBrain:
    """Returns a shared default ``SimBrain`` for a data dir (``$HYPERTEAM_DATA_DIR`` when None).

    The brain's question table is loaded once and reused by every caller.
    """
    return _brain_for(None if data_dir is None else os.fspath(data_dir))


def complete(
    brain: SimBrain,
    model: str,
    request: ChatRequest,
    *,
    first_index: int = 0,
    accuracy: float | None = None,
    world: str | None = None,
) -> list[tuple[str, int, str]]:
    """Runs the brain on a request and applies ``max_tokens``.

    Returns:
        One ``(text, completion_tokens, finish_reason)`` per choice.
    """
    texts = brain.respond(
        model,
        request.messages,
        temperature=request.temperature,
        seed=request.seed,
        n=request.n,
        first_index=first_index,
        accuracy=accuracy,
        world=world,
    )
    out = []
    for text in texts:
        finish = "stop"
        if request.max_tokens is not None:
            text, cut = truncate_tokens(text, request.max_tokens)
            finish = "length" if cut else "stop"
        out.append((text, count_tokens(text), finish))
    return out


class SimModel:
    """The simulated model as an in-process ``ChatModel`` (the ``sim:ACC`` spec).

    Each answer to a known question is correct with probability ``accuracy``;
    see ``SimBrain`` for the rest. Usage comes from the approximate tokenizer;
    every result counts one call.

    Args:
        accuracy: probability of a correct answer.
        seed: the brain's seed, used when ``brain`` is None.
        brain: a shared brain (its ``seed`` and ``follow_majority`` apply).
        latency: sleep as a served model would take; None answers at once.
        name: the model name; defaults to ``sim:ACCURACY`` (``sim:ACCURACY?world=NAME`` with a world).
        world: a SIMULATED world (:mod:`hyperteam.testing.sim.worlds`) in which prompts
            and structure change accuracy; None is the plain simulator.

    Example:
        >>> import asyncio
        >>> from hyperteam.models.types import ChatRequest
        >>> model = SimModel(0.9, brain=SimBrain(data_dir="/nonexistent"))
        >>> result = asyncio.run(model.chat(ChatRequest([{"role": "user", "content": "2 + 3?"}])))
        >>> result.usage.calls, "####" in result.text
        (1, True)
    """

    def __init__(
        self,
        accuracy: float = 0.7,
        *,
        seed: int = 0,
        brain: SimBrain | None = None,
        latency: LatencyModel | None = None,
        name: str | None = None,
        world: str | None = None,
    ) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ConfigError(f"accuracy must be between 0 and 1, got {accuracy}")
        if world is not None:
            get_world(world)  # raises ConfigError naming the known worlds
        self.accuracy = float(accuracy)
        self.world = world
        self.brain = brain if brain is not None else SimBrain(accuracy=accuracy, seed=seed)
        self.latency = latency
        default = f"sim:{accuracy}" + (f"?world={world}" if world else "")
        self.name = name if name is not None else default

    async def chat(self, request: ChatRequest, *, sample_index: int = 0) -> ChatResult:
        """Answers one request with ``request.n`` choices.

        Args:
            request: the chat request.
            sample_index: repeated samples of one request get distinct choices.
        """
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        started = time.perf_counter()
        choices = complete(
            self.brain,
            self.name,
            request,
            first_index=sample_index * request.n,
            accuracy=self.accuracy,
            world=self.world,
        )
        completion_tokens = sum(tokens for _, tokens, _ in choices)
        if self.latency is not None and not self.latency.is_zero:
            # Choices are generated in parallel, so the longest one sets the time.
            await asyncio.sleep(self.latency.seconds(max(tokens for _, tokens, _ in choices)))
        usage = Usage(
            prompt_tokens=count_message_tokens(request.messages),
            completion_tokens=completion_tokens,
            calls=1,
            latency_s=time.perf_counter() - started,
        )
        return ChatResult(
            completions=[Completion(text, finish_reason=finish) for text, _, finish in choices],
            usage=usage,
            model=self.name,
        )
