"""The HTTP agent service: served teams as OpenAI-compatible models, and a runs API.

Imports are lazy so that ``hyperteam.serve.records`` (used by the run
stores) does not pull in FastAPI.

Example:
    >>> from hyperteam.serve import create_app  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hyperteam.serve.app import Service, create_app
    from hyperteam.serve.auth import KeyRing, RateLimiter
    from hyperteam.serve.limits import Limits, max_calls
    from hyperteam.serve.manager import RunManager

__all__ = ["KeyRing", "Limits", "RateLimiter", "RunManager", "Service", "create_app", "max_calls"]

_WHERE = {
    "create_app": "hyperteam.serve.app",
    "Service": "hyperteam.serve.app",
    "KeyRing": "hyperteam.serve.auth",
    "RateLimiter": "hyperteam.serve.auth",
    "Limits": "hyperteam.serve.limits",
    "max_calls": "hyperteam.serve.limits",
    "RunManager": "hyperteam.serve.manager",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hyperteam.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
