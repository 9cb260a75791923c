"""Answer extraction as lm-evaluation-harness does it for GSM8K (strict-match and flexible-extract)."""

from __future__ import annotations

import json

import pytest

from hyperteam.agents._numbers import normalize_number
from hyperteam.agents.parsing import extract_answer, extract_flexible, extract_strict


@pytest.mark.slow
def test_strict_recovers_every_gold_answer_of_the_gsm8k_test_set(real_data_dir):
    lines = (real_data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 1319
    recovered = 0
    for r in records:
        gold = normalize_number(r["answer"].split("####")[-1])
        answer = extract_strict(r["answer"])  # the worked solution, calculator notes and all
        recovered += answer is not None and answer == gold
    assert recovered == 1319


# (output, strict, flexible): what lm-eval's regexes find, after its ignore rules
# (",", "$", a trailing "."), compared as numbers.
TRICKY = [
    ("So she has 18 left.\n#### 18", "18", "18"),
    ("#### -7", "-7", "-7"),
    ("The total is $1,234.50.\n#### 1,234.50", "1234.5", "1234.5"),
    ("#### $20", None, "20"),  # lm-eval's strict regex wants a digit right after "#### "
    ("The answer is 42.", "42", "42"),
    ("The answer is -3.5. Next, 7 more steps.", "-3.5", "7"),  # flexible takes the last number
    ("#### 12\nThen I double-check: 12 * 2 = 24", "12", "24"),
    ("#### 5\n#### 6", "5", "6"),  # strict takes the first match
    ("She earns 1,000 dollars.", None, "1000"),
    ("It costs $3.", None, "3"),
    ("I cannot solve this.", None, None),
    ("x = 4, y = 5.", None, "5"),
    ("Temperatures fell to -12 degrees", None, "-12"),
    ("#### 0.50", "0.5", "0.5"),
]


@pytest.mark.parametrize(("text", "strict", "flexible"), TRICKY)
def test_tricky_outputs_match_lm_eval(text: str, strict: str | None, flexible: str | None):
    assert extract_strict(text) == strict
    assert extract_flexible(text) == flexible
    assert extract_answer(text) == (strict or flexible)
