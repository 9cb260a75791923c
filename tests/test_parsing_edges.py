"""Numeric answers as they arrive from datasets and models: ints, floats from JSON, odd text."""

from __future__ import annotations

import math

import pytest

from hyperteam.agents._numbers import normalize_number
from hyperteam.agents.parsing import extract_answer


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (72, "72"),  # an int target (GSM8K-like JSON)
        (-5, "-5"),
        (3.0, "3"),  # a float that is a whole number reads as one
        (-2.0, "-2"),
        (2.5, "2.5"),
        (0.1 + 0.2, "0.3"),  # binary noise hidden
        (1e-7, "0.0000001"),  # plain digits, never exponent notation
        (1234567.25, "1234567.25"),
    ],
)
def test_numbers_from_json_targets_read_as_people_write_them(value: float, canonical: str):
    assert normalize_number(value) == canonical


@pytest.mark.parametrize("value", [None, True, False, math.inf, -math.inf, math.nan])
def test_values_that_are_not_answers_give_none(value: object):
    # True is an int in Python; a boolean target must not become "1".
    assert normalize_number(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.00000010", "0.0000001"),
        ("-$5", "-5"),
        ("$-5", "-5"),
        (" 1,000.00. ", "1000"),
        ("1e5", None),
        ("five", None),
    ],
)
def test_number_texts(text: str, canonical: str | None):
    assert normalize_number(text) == canonical


def test_a_float_answer_and_its_text_agree():
    assert normalize_number(0.5) == extract_answer("so half of it\n#### 0.50")
