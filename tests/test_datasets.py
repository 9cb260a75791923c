"""Loading the math suites, and the canonical text of numeric answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperteam.agents._numbers import normalize_number
from hyperteam.errors import ConfigError
from hyperteam.evals import datasets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000.0", "1000"),
        ("$18", "18"),
        ("-3.50", "-3.5"),
        ("18.", "18"),
        (" 42 ", "42"),
        ("-$5", "-5"),
        (".5", "0.5"),
        ("-0", "0"),
        (12.0, "12"),
        (3244047.0999999996, "3244047.1"),
        (7, "7"),
        ("twelve", None),
        ("", None),
        ("1e5", None),
        (None, None),
    ],
)
def test_normalize_number(text: object, expected: str | None) -> None:
    assert normalize_number(text) == expected  # type: ignore[arg-type]


def test_gsm8k_counts_ids_and_gold(data_dir: Path) -> None:
    test = datasets.load("gsm8k", split="test")
    train = datasets.load("gsm8k", split="train")
    assert (len(test), len(train)) == (1319, 7473)
    assert test[0].id == "gsm8k-test-0000" and test[42].id == "gsm8k-test-0042"
    # Gold answers with thousands separators are normalised ("1,080" -> "1080").
    assert all("," not in p.answer and normalize_number(p.answer) == p.answer for p in train)
    assert any(len(p.answer) > 3 for p in train)  # there were separators to remove


def test_gsm_hard_and_multiarith_load(data_dir: Path) -> None:
    hard = datasets.load("gsm-hard")
    arith = datasets.load("multiarith", limit=10)
    assert len(hard) == 1319 and hard[0].id == "gsm-hard-test-0000"
    assert not any(p.answer.endswith(".0") for p in hard)  # 12.0 -> "12"
    assert len(arith) == 10 and len(datasets.load("multiarith")) == 600


@pytest.mark.slow
def test_the_real_suites_content(real_data_dir: Path) -> None:
    test = datasets.load("gsm8k", split="test")
    assert test[0].question.startswith("Janet") and test[0].answer == "18"
    assert datasets.load("multiarith", limit=1)[0].answer == "39"
    assert not any(p.answer.endswith(".0") for p in datasets.load("gsm-hard"))


def test_explicit_data_dir_and_limit(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYPERTEAM_DATA_DIR")
    problems = datasets.load("gsm8k", limit=3, data_dir=data_dir)
    assert [p.id for p in problems] == ["gsm8k-test-0000", "gsm8k-test-0001", "gsm8k-test-0002"]


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    path = tmp_path / "gsm8k" / "test.jsonl"
    path.write_text('{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\\n#### 2"}\n{"question": oops\n')
    with pytest.raises(ConfigError) as err:
        datasets.load("gsm8k", data_dir=tmp_path)
    assert f"{path}:2" in str(err.value)


def test_record_without_gold_names_line(tmp_path: Path) -> None:
    (tmp_path / "multiarith").mkdir()
    path = tmp_path / "multiarith" / "mawpsmultiarith.jsonl"
    path.write_text('{"input": "What is 1 + 1?", "target": 2}\n{"input": "Q?", "target": "many"}\n')
    with pytest.raises(ConfigError, match=r"mawpsmultiarith.jsonl:2"):
        datasets.load("multiarith", data_dir=tmp_path)


def test_missing_dir_and_file_say_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as err:
        datasets.load("gsm8k", data_dir=missing)
    assert str(missing) in str(err.value) and "HYPERTEAM_DATA_DIR" in str(err.value)
    with pytest.raises(ConfigError) as err:
        datasets.load("gsm-hard", data_dir=tmp_path)
    assert "gsmhardv2.jsonl" in str(err.value) and "HYPERTEAM_DATA_DIR" in str(err.value)
    # No data dir, nothing cached, offline: one line that says what to do, and no network.
    monkeypatch.delenv("HYPERTEAM_DATA_DIR", raising=False)
    monkeypatch.setenv("HYPERTEAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        datasets.load("gsm8k")
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "HYPERTEAM_DATA_DIR" in message and "gsm8k/test.jsonl" in message and "'demo'" in message
    assert not datasets.is_available("gsm8k") and datasets.is_available("demo")


def test_unknown_suite_or_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known suites: gsm8k"):
        datasets.load("gsm9k", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="no split 'train'"):
        datasets.load("multiarith", split="train", data_dir=tmp_path)
