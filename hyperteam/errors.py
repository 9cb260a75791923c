"""The exception hierarchy: every error hyperteam raises on purpose is one of these."""

from __future__ import annotations


class HyperteamError(Exception):
    """Base class of every error hyperteam raises on purpose."""


class ConfigError(HyperteamError):
    """A bad spec, file or argument. The message says what is wrong and where."""


class ModelError(HyperteamError):
    """A model endpoint failed, after retries where retrying made sense.

    Attributes:
        kind: a short machine-readable reason (``timeout``, ``http_500``,
            ``connection``, ``rate_limited``, ``bad_response``, ...).
        status: the HTTP status, where there was one.
    """

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class ParseError(HyperteamError):
    """A model's output could not be used (no answer, malformed structure)."""


class LimitError(HyperteamError):
    """A configured limit (tokens, fan-out, request size, budget) was reached."""
