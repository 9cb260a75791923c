"""The simulated model, for tests, benchmarks and offline demos; its answers are not real LLM output.

A ``SimBrain`` answers the known suite questions correctly with a set
probability; ``SimModel`` serves it in-process (the ``sim:ACC`` spec) and
``SimServer`` over an OpenAI-compatible HTTP API (``hyperteam sim``).

Example:
    >>> import asyncio
    >>> from hyperteam.models.types import ChatRequest
    >>> model = SimModel(0.8)
    >>> result = asyncio.run(model.chat(ChatRequest([{"role": "user", "content": "What is 2 + 3?"}])))
    >>> result.text.splitlines()[-1].startswith("####")
    True
"""

from hyperteam.models.tokenizer import count_message_tokens, count_tokens
from hyperteam.testing.sim.brain import SimBrain
from hyperteam.testing.sim.model import LatencyModel, SimModel, brain_for
from hyperteam.testing.sim.server import (
    FAULT_KINDS,
    SimServer,
    start_sim_subprocess,
    stop_sim_subprocess,
)

__all__ = [
    "FAULT_KINDS",
    "LatencyModel",
    "SimBrain",
    "SimModel",
    "SimServer",
    "brain_for",
    "count_message_tokens",
    "count_tokens",
    "start_sim_subprocess",
    "stop_sim_subprocess",
]
