"""Model specs, the OpenAI-compatible client, limits, retries, cache and usage."""

from hyperteam.models.cache import ResponseCache
from hyperteam.models.endpoint import Endpoint, EndpointModel
from hyperteam.models.retry import RetryPolicy
from hyperteam.models.runtime import Runtime
from hyperteam.models.spec import resolve
from hyperteam.models.types import ChatModel, ChatRequest, ChatResult, Completion, Usage

__all__ = [
    "ChatModel",
    "ChatRequest",
    "ChatResult",
    "Completion",
    "Endpoint",
    "EndpointModel",
    "ResponseCache",
    "RetryPolicy",
    "Runtime",
    "Usage",
    "resolve",
]
