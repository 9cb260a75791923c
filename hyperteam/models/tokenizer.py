"""A deterministic approximate tokenizer: one token per word and per punctuation mark.

Real BPE tokenizers give a count within a small factor of this one on
English text, which is all a simulator needs to charge plausible usage. It
needs no download (unlike tiktoken) and costs a few microseconds per message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["count_message_tokens", "count_tokens", "message_text", "message_tokens", "tokenize", "truncate_tokens"]

_TOKEN = re.compile(r"\w+|[^\w\s]")

# Chat formats add a few tokens per message for the role and separators.
PER_MESSAGE_TOKENS = 4


def count_tokens(text: str) -> int:
    """Returns the number of tokens in ``text``.

    Example:
        >>> count_tokens("Janet's ducks lay 16 eggs.")
        8
    """
    return len(_TOKEN.findall(text))


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``, as :func:`count_tokens` counts them."""
    return _TOKEN.findall(text)


def message_tokens(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The prompt as one token sequence, with a chat template's markers around each message.

    Its length is :func:`count_message_tokens`; prefix-cache studies compare these sequences.
    """
    tokens: list[str] = []
    for message in messages:
        tokens += ["<|start|>", str(message.get("role", "")), "<|message|>"]
        tokens += _TOKEN.findall(message_text(message))
        tokens.append("<|end|>")
    return tokens


# System prompts and questions repeat across agents and rounds, so counting
# message contents through a small cache saves most of the regex work.
_count_cached = lru_cache(maxsize=4096)(count_tokens)


def message_text(message: Mapping[str, Any]) -> str:
    """Returns a chat message's text, joining OpenAI content parts if it has several."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Returns the prompt tokens of chat messages: their text plus a few per message.

    Example:
        >>> count_message_tokens([{"role": "user", "content": "What is 2 + 3?"}])
        10
    """
    total = 0
    for message in messages:
        total += _count_cached(message_text(message)) + PER_MESSAGE_TOKENS
    return total


def truncate_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """Cuts ``text`` after its first ``max_tokens`` tokens.

    Returns:
        The (possibly shortened) text and whether it was cut.
    """
    if max_tokens <= 0:
        return "", bool(text)
    for i, match in enumerate(_TOKEN.finditer(text), start=1):
        if i == max_tokens:
            end = match.end()
            return text[:end], end < len(text.rstrip())
    return text, False
