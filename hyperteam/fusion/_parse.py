"""Strict parsing of the tagged lines that fusion prompts ask models to end with.

A judge or selector that does not follow the format is not guessed at: the
parsers return None and the strategy falls back to a vote, saying so.
"""

from __future__ import annotations

import re

_INDEX = re.compile(r"\[?\s*(\d+)\s*\]?\.?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def tagged_line(text: str, tag: str) -> str | None:
    """What follows ``tag:`` on the last line that starts with it (case-insensitive), or None.

    The last such line wins because models often restate the format before
    answering. Markdown emphasis around the tag (``**Selected:** 2``) is allowed.
    """
    found = None
    for line in text.splitlines():
        bare = line.strip().replace("*", "").strip()
        if bare.lower().startswith(tag.lower() + ":"):
            found = bare[len(tag) + 1 :].strip()
    return found


def parse_index(value: str | None, n: int) -> int | None:
    """A 1-based index written as ``3`` or ``[3]``, as a 0-based index; None unless in 1..n."""
    if value is None:
        return None
    match = _INDEX.fullmatch(value.strip())
    if match is None:
        return None
    k = int(match.group(1))
    return k - 1 if 1 <= k <= n else None


def parse_scores(value: str | None, n: int, high: float) -> list[float] | None:
    """Exactly ``n`` numbers in [0, high], separated by commas or spaces; else None."""
    if value is None:
        return None
    parts = [p for p in re.split(r"[,\s;]+", value.strip()) if p]
    if len(parts) != n or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    scores = [float(p) for p in parts]
    return scores if all(0.0 <= s <= high for s in scores) else None


def parse_ranking(value: str | None, n: int) -> list[int] | None:
    """A full ranking ``2 > 1 > 3`` (or ``2, 1, 3``) of 1..n, best first, as 0-based indices; else None."""
    if value is None:
        return None
    parts = [p.strip() for p in re.split(r"[>,]", value) if p.strip()]
    indices = [parse_index(p, n) for p in parts]
    if len(indices) != n or None in indices or len(set(indices)) != n:
        return None
    return [i for i in indices if i is not None]
