"""Extracting the final answer from an agent's output, as lm-evaluation-harness does for GSM8K.

Two modes, both reported by evals:

* ``strict`` (lm-eval's ``strict-match``): the first ``#### N`` (regex
  ``#### (\\-?[0-9\\.\\,]+)``); failing that, the first "The answer is N."
  (the ``gsm8k-cot`` variant of strict-match).
* ``flexible`` (lm-eval's ``flexible-extract``): the last match of
  ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` anywhere in the text.

lm-eval then drops ``,``, ``$`` and a trailing ``.`` before comparing
strings; :func:`normalize_number` does that and also compares numbers by
value, so ``1,000.00`` and ``1000`` agree (lm-eval would call them
different).
"""

from __future__ import annotations

import re

from hyperteam.agents._numbers import normalize_number

_STRICT = (
    re.compile(r"#### (\-?[0-9\.\,]+)"),
    re.compile(r"The answer is (\-?[0-9\.\,]+)."),
)
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def extract_strict(text: str) -> str | None:
    """The strict-match answer, normalised; None when the output has no marked answer.

    Example:
        >>> extract_strict("so 3 + 4 = 7\\n#### 7"), extract_strict("The answer is $1,000.")
        ('7', '1000')
    """
    for pattern in _STRICT:
        found = pattern.search(text)
        if found:
            return normalize_number(found.group(1))
    return None


def extract_flexible(text: str) -> str | None:
    """The flexible-extract answer (the last number-like run), normalised.

    Example:
        >>> extract_flexible("I got 12 apples, then 3 more: 15 in all.")
        '15'
    """
    found = _FLEXIBLE.findall(text)
    if not found:
        return None
    last = next(group for group in found[-1] if group)
    return normalize_number(last)


def extract_answer(text: str) -> str | None:
    """The strict answer if there is one, else the flexible one (what agents and votes use)."""
    return extract_strict(text) or extract_flexible(text)
