"""Extracting the final answer from an agent's output.

Two modes, as lm-evaluation-harness reports them for GSM8K:

* ``strict``: the number after ``####`` or after "The answer is";
* ``flexible``: the last number anywhere in the text.

Both go through :func:`normalize_number`, so ``$1,000.00`` and ``1000`` agree.
"""

from __future__ import annotations

import re

from hyperteam.evals._numbers import normalize_number

_STRICT = (
    re.compile(r"####\s*\$?\s*(-?[0-9][0-9.,]*)"),
    re.compile(r"[Tt]he (?:final )?answer is:?\s*\$?\s*(-?[0-9][0-9.,]*)"),
)
_ANY_NUMBER = re.compile(r"-?\$?[0-9][0-9,]*(?:\.[0-9]+)?")


def extract_strict(text: str) -> str | None:
    """The answer marked ``#### N`` (last such mark) or "The answer is N", normalised."""
    for pattern in _STRICT:
        found = pattern.findall(text)
        if found:
            return normalize_number(found[-1])
    return None


def extract_flexible(text: str) -> str | None:
    """The last number in the text, normalised."""
    found = _ANY_NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def extract_answer(text: str) -> str | None:
    """The strict answer if there is one, else the flexible one."""
    return extract_strict(text) or extract_flexible(text)
