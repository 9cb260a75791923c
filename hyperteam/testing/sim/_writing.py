"""How the simulated model writes: random draws, plausible wrong answers, chains of thought.

Private to the simulator; everything here is a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from decimal import Decimal

from hyperteam.agents._numbers import normalize_number
from hyperteam.models.tokenizer import count_tokens

# Unsigned on purpose: word problems state amounts, and a simpler pattern
# scans long prompts several times faster.
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_MASK = 0xFFFFFFFFFFFFFFFF


class Rolls:
    """Uniform draws seeded from a digest: a splitmix64 stream, cheaper than ``random.Random``."""

    __slots__ = ("_state",)

    def __init__(self, digest: bytes) -> None:
        self._state = int.from_bytes(digest[:8], "little")

    def next64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """A float in [0, 1)."""
        return (self.next64() >> 11) / 9007199254740992.0

    def pick(self, items: Sequence[str]) -> str:
        return items[self.next64() % len(items)]


def numbers_in(text: str, limit: int = 12) -> list[str]:
    """The first ``limit`` distinct numbers in ``text``, normalised, in order of appearance."""
    seen: set[str] = set()
    found: list[str] = []
    for match in _NUMBER.finditer(text):
        raw = match.group()
        if raw in seen:
            continue
        seen.add(raw)
        value = normalize_number(raw)
        if value is not None and value not in found:
            found.append(value)
            if len(found) >= limit:
                break
    return found


def _fmt(value: Decimal) -> str:
    return normalize_number(format(value, "f")) or "0"


def wrong_options(gold: str, numbers: list[str], seed: int) -> tuple[str, ...]:
    """Plausible wrong answers to a question, most likely first; never ``gold``.

    The order is fixed per question (from ``seed`` and ``gold``), so that the
    favourite wrong answer differs between questions but not between agents.
    """
    g = Decimal(gold)
    raw = [g + 1, g - 1, g * 2, g / 2, g + 10, g - 10, g * 10]
    if g != g.to_integral_value():
        raw.append(g.to_integral_value())
    else:
        raw[3] = (g / 2).to_integral_value()
    # Intermediate quantities from the question are the classic wrong answers.
    raw.extend(Decimal(x) for x in numbers[:3])
    options: list[str] = []
    for value in raw:
        if g >= 0 > value:
            continue  # a negative count is not a plausible slip
        text = _fmt(value)
        if text != gold and text not in options:
            options.append(text)
    if not options:
        options.append(_fmt(g + 1))
    rolls = Rolls(hashlib.blake2b(f"{seed}\x1f{gold}".encode(), digest_size=8).digest())
    options.sort(key=lambda _: rolls.next64())
    return tuple(options)


def pick_wrong(options: Sequence[str], rolls: Rolls) -> str:
    """Picks options[i] with probability about 2^-(i+1): agents often agree on a wrong answer."""
    u = rolls.uniform()
    index = 0
    while u >= 0.5 and index < len(options) - 1:
        u = (u - 0.5) * 2
        index += 1
    return options[index]


def guess(numbers: list[str], rolls: Rolls) -> str:
    """A number an unsure model might produce from the numbers it was shown."""
    if not numbers:
        return str(rolls.next64() % 100)
    a = Decimal(rolls.pick(numbers))
    b = Decimal(rolls.pick(numbers))
    op = rolls.next64() % 4
    value = a if op == 0 else a + b if op == 1 else a * b if op == 2 else abs(a - b)
    return _fmt(value)


_OPENERS = {
    "solve": (
        "Let me work through this step by step.",
        "First, I list the quantities the problem gives: {nums}.",
        "The problem starts from {a} and {b}, so I begin with those numbers.",
        "I will set up the calculation carefully before combining any of the numbers given in the problem.",
    ),
    "guess": (
        "Let me work through this step by step.",
        "The numbers mentioned are {nums}, so I reason from them.",
    ),
    "majority": (
        "Looking at the answers proposed so far, most of them arrive at {ans}.",
        "I compare the previous solutions with my own reasoning before deciding.",
        "Several of the earlier responses agree, and their arithmetic looks sound to me.",
    ),
}
_STEPS = (
    "Combining {a} and {b} gives an intermediate value of {c}.",
    "Next, I account for {a} in the remaining part of the problem.",
    "Multiplying where the problem asks for a total and subtracting what is used up keeps "
    "the units consistent throughout.",
    "Checking the arithmetic again, each step agrees with the quantities stated in the "
    "question, so nothing was lost along the way.",
    "I double-check that no quantity from the question was counted twice or left out, "
    "since that is the most common mistake in problems like this one.",
    "Putting the partial results together leads to the final amount.",
    "Working backwards from the result to {a} confirms that the steps fit together.",
)
_CLOSERS = (
    "So the answer is {ans}.",
    "Therefore the result is {ans}.",
    "That gives a final answer of {ans}.",
)
_FIELDS = ("a", "b", "c", "ans", "nums")
# Token counts of each template without its fields, so that a sentence's
# length is known without running the tokenizer on it.
_BARE: dict[str, int] = {}


def _tokens(template: str, field_tokens: dict[str, int]) -> int:
    bare = _BARE.get(template)
    if bare is None:
        bare = _BARE[template] = count_tokens(template.format(**dict.fromkeys(_FIELDS, "")))
    return bare + sum(n for f, n in field_tokens.items() if "{" + f + "}" in template)


def chain_of_thought(answer: str, numbers: list[str], mode: str, rolls: Rolls) -> str:
    """Writes 2-5 sentences ending in a ``#### answer`` line, about 30-120 tokens long.

    Args:
        answer: the final number.
        numbers: numbers from the question, reused in the reasoning.
        mode: ``solve``, ``guess`` or ``majority`` (picks the opening sentence).
        rolls: the draws that pick the sentences and the length.
    """
    nums = numbers or [str(2 + rolls.next64() % 9), str(2 + rolls.next64() % 9)]
    a, b = rolls.pick(nums), rolls.pick(nums)
    values = {"a": a, "b": b, "c": _fmt(Decimal(a) + Decimal(b)), "ans": answer}
    values["nums"] = ", ".join(nums[:6])
    field_tokens = {f: count_tokens(v) for f, v in values.items()}
    target = 30 + rolls.next64() % 91
    closer = rolls.pick(_CLOSERS)
    budget = target - _tokens(closer, field_tokens) - 1 - field_tokens["ans"]
    opener = rolls.pick(_OPENERS[mode])
    templates = [opener]
    used = _tokens(opener, field_tokens)
    steps = list(_STEPS)
    while len(templates) < 4 and used < budget:
        step = steps.pop(rolls.next64() % len(steps))
        templates.append(step)
        used += _tokens(step, field_tokens)
    templates.append(closer)
    return " ".join(t.format(**values) for t in templates) + f"\n#### {answer}"
