"""Paired statistics for two systems scored on the same problems.

When two teams answer the same problems, the question a user asks is whether
the *difference* is real. Treating the two accuracies as independent samples
wastes the pairing and gives intervals far too wide (or, worse, the reader
compares two overlapping intervals and concludes nothing). These functions
use the pairing:

- ``mcnemar_exact(b, c)``: the exact two-sided McNemar p-value from the
  discordant counts (problems only one system got right);
- ``paired_difference(a_correct, b_correct)``: the accuracy difference
  ``b - a`` with a 95% interval for paired proportions (Newcombe's hybrid
  score interval, method 10 of Newcombe 1998), which stays inside [-1, 1]
  and behaves at 0% and 100% accuracy where the Wald interval does not;
- ``compare_paired``: both, with the 2x2 counts, as one ``PairedComparison``.

Example:
    >>> round(mcnemar_exact(1, 10), 4)
    0.0117
    >>> diff, lo, hi = paired_difference([1, 1, 0, 0], [1, 1, 1, 0])
    >>> diff, lo < 0 < hi
    (0.25, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hyperteam.errors import ConfigError

__all__ = ["PairedComparison", "compare_paired", "mcnemar_exact", "paired_difference", "wilson_interval"]

_Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def mcnemar_exact(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value.

    Args:
        b: problems the first system got right and the second wrong.
        c: problems the first system got wrong and the second right.

    Returns:
        ``P`` of a split at least as lopsided as ``b : c`` if either system
        were as likely to win each discordant problem (a binomial(b + c, 1/2)
        test), capped at 1. With no discordant problems it is 1.0.

    Raises:
        ConfigError: a negative count.
    """
    if b < 0 or c < 0:
        raise ConfigError(f"mcnemar_exact: counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    # Exact integers to the end: 2**n overflows a float for n > 1023.
    return min(1.0, 2 * tail / 2**n)


def wilson_interval(successes: int, n: int, *, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0.0, 1.0)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Two systems on the same ``n`` problems.

    Attributes:
        n: problems both were scored on.
        both: problems both got right.
        only_a: problems only the first got right (McNemar's ``b``).
        only_b: problems only the second got right (McNemar's ``c``).
        diff: accuracy of the second minus accuracy of the first.
        lo: lower end of the paired 95% interval of ``diff``.
        hi: upper end of the paired 95% interval of ``diff``.
        p_value: the exact McNemar p-value.
    """

    n: int
    both: int
    only_a: int
    only_b: int
    diff: float
    lo: float
    hi: float
    p_value: float

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return {
            "n": self.n,
            "both": self.both,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "diff": self.diff,
            "ci95": [self.lo, self.hi],
            "mcnemar_p": self.p_value,
        }


def paired_difference(
    a_correct: Sequence[bool | int], b_correct: Sequence[bool | int], *, z: float = _Z95
) -> tuple[float, float, float]:
    """The accuracy difference ``b - a`` on the same problems, with its paired interval.

    Args:
        a_correct: per problem, whether the first system was right.
        b_correct: per problem, in the same order, whether the second was right.
        z: the normal quantile of the interval (95% by default).

    Returns:
        ``(diff, lo, hi)``.

    Raises:
        ConfigError: the sequences differ in length or are empty.
    """
    c = compare_paired(a_correct, b_correct, z=z)
    return c.diff, c.lo, c.hi


def compare_paired(
    a_correct: Sequence[bool | int], b_correct: Sequence[bool | int], *, z: float = _Z95
) -> PairedComparison:
    """The 2x2 counts, the paired difference ``b - a`` with its interval, and McNemar's exact p.

    Raises:
        ConfigError: the sequences differ in length or are empty.
    """
    if len(a_correct) != len(b_correct):
        raise ConfigError(f"paired comparison: {len(a_correct)} results against {len(b_correct)}; pair them first")
    n = len(a_correct)
    if n == 0:
        raise ConfigError("paired comparison: no problems in common")
    e = f = g = h = 0  # both right, only a, only b, both wrong
    for a, b in zip(a_correct, b_correct, strict=True):
        if a and b:
            e += 1
        elif a:
            f += 1
        elif b:
            g += 1
        else:
            h += 1
    lo, hi = _newcombe(e, f, g, h, z)
    return PairedComparison(n, e, f, g, (g - f) / n, lo, hi, mcnemar_exact(f, g))


def _newcombe(e: int, f: int, g: int, h: int, z: float) -> tuple[float, float]:
    """Newcombe's (1998) method 10 for ``p_b - p_a``: Wilson limits of each, combined with their correlation."""
    n = e + f + g + h
    p_b, p_a = (e + g) / n, (e + f) / n
    l_b, u_b = wilson_interval(e + g, n, z=z)
    l_a, u_a = wilson_interval(e + f, n, z=z)
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    phi = (e * h - f * g) / math.sqrt(denom) if denom else 0.0
    diff = p_b - p_a
    delta = math.sqrt(max(0.0, (p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2))
    eps = math.sqrt(max(0.0, (u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2))
    return max(-1.0, diff - delta), min(1.0, diff + eps)
