"""Paired statistics: McNemar's exact test and the paired accuracy difference with its interval."""

from __future__ import annotations

import pytest

from hyperteam.errors import ConfigError
from hyperteam.evals.stats import compare_paired, mcnemar_exact, paired_difference, wilson_interval


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 10) == pytest.approx(24 / 2048)  # 2 * (1 + 11) / 2**11
    assert mcnemar_exact(10, 1) == mcnemar_exact(1, 10)
    assert mcnemar_exact(5, 5) == 1.0  # a tie is capped at 1, not 2 * 0.62
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 0.0625: five wins in a row is not yet p < 0.05
    # Large counts stay exact (no float overflow of 2**n) and tiny.
    assert 0 < mcnemar_exact(600, 900) < 1e-12
    with pytest.raises(ConfigError, match="counts must be >= 0"):
        mcnemar_exact(-1, 3)


def test_paired_interval_reproduces_newcombes_published_example():
    # Newcombe (1998), paired example: 36 both, 12 only A, 2 only B, 0 neither; method 10 gives 0.0569 to 0.3404.
    a = [1] * 36 + [1] * 12 + [0] * 2
    b = [1] * 36 + [0] * 12 + [1] * 2
    diff, lo, hi = paired_difference(b, a)
    assert diff == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.0569, 0.3404), abs=1e-4)
    # The other way round flips the sign and the interval.
    assert paired_difference(a, b) == pytest.approx((-0.2, -0.3404, -0.0569), abs=1e-4)


def test_paired_difference_at_the_boundaries():
    same = [True] * 20
    diff, lo, hi = paired_difference(same, same)
    assert diff == 0 and lo < 0 < hi  # identical runs: no difference, but the interval is honest about n = 20
    diff, lo, hi = paired_difference([False] * 10, [True] * 10)
    assert diff == 1.0 and 0.5 < lo < hi == 1.0
    with pytest.raises(ConfigError, match="no problems"):
        paired_difference([], [])
    with pytest.raises(ConfigError, match="3 results against 2"):
        paired_difference([1, 0, 1], [1, 0])


def test_pairing_is_sharper_than_two_independent_intervals():
    # 200 problems; B fixes 20 of A's misses and breaks 4 of its hits: +8 points.
    a = [1] * 150 + [0] * 50
    b = [1] * 146 + [0] * 4 + [1] * 20 + [0] * 30
    c = compare_paired(a, b)
    assert (c.n, c.both, c.only_a, c.only_b) == (200, 146, 4, 20)
    assert c.diff == pytest.approx(0.08)
    assert c.lo > 0 and c.p_value < 0.01
    # Two independent Wilson intervals overlap, and would have called it a wash.
    a_hi = wilson_interval(sum(a), 200)[1]
    b_lo = wilson_interval(sum(b), 200)[0]
    assert b_lo < a_hi
    assert c.as_dict()["ci95"] == [c.lo, c.hi] and c.as_dict()["mcnemar_p"] == c.p_value
