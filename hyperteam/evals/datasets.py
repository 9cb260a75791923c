"""Math word-problem suites (GSM8K, GSM-Hard, MultiArith) read from ``HYPERTEAM_DATA_DIR``.

The data sets are third-party files kept outside the project; this module
only reads them from a path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hyperteam.errors import ConfigError
from hyperteam.evals._numbers import normalize_number

__all__ = ["SUITES", "Problem", "load", "splits", "suite_path"]

DATA_DIR_ENV = "HYPERTEAM_DATA_DIR"

# suite -> split -> (file under the data dir, question field, answer field)
_FILES: dict[str, dict[str, tuple[str, str, str]]] = {
    "gsm8k": {
        "train": ("gsm8k/train.jsonl", "question", "answer"),
        "test": ("gsm8k/test.jsonl", "question", "answer"),
    },
    "gsm-hard": {"test": ("gsm-hard/gsmhardv2.jsonl", "input", "target")},
    "multiarith": {"test": ("multiarith/mawpsmultiarith.jsonl", "input", "target")},
}

SUITES: tuple[str, ...] = tuple(_FILES)


@dataclass(slots=True)
class Problem:
    """One question with its gold answer.

    Attributes:
        id: a stable id such as ``gsm8k-test-0042``.
        question: the question text, as in the data set.
        answer: the gold number, normalised (``"1000"``, ``"-3.5"``).

    Example:
        >>> Problem(id="demo-test-0000", question="What is 2 + 3?", answer="5").answer
        '5'
    """

    id: str
    question: str
    answer: str


def splits(name: str) -> tuple[str, ...]:
    """Returns the splits a suite has, e.g. ``("train", "test")`` for ``gsm8k``.

    Raises:
        ConfigError: the suite is unknown.
    """
    return tuple(_suite(name))


def suite_path(name: str, *, split: str = "test", data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Returns the file that holds one split of a suite (it may not exist).

    Raises:
        ConfigError: the suite or split is unknown, or no data dir is configured.
    """
    files = _suite(name)
    if split not in files:
        raise ConfigError(f"suite {name!r} has no split {split!r}; it has: {', '.join(files)}")
    return _data_dir(data_dir) / files[split][0]


def load(
    name: str,
    *,
    split: str = "test",
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Loads a suite's problems, in file order.

    Args:
        name: ``gsm8k``, ``gsm-hard`` or ``multiarith``.
        split: ``test`` or (gsm8k only) ``train``.
        limit: keep only the first ``limit`` problems.
        data_dir: the folder holding the suites; defaults to ``$HYPERTEAM_DATA_DIR``.

    Returns:
        The problems, with normalised gold answers.

    Raises:
        ConfigError: unknown suite or split, a missing folder or file, or a
            line that is not a valid record (the message names file and line).

    Example:
        >>> problems = load("gsm8k", split="test", limit=5)  # doctest: +SKIP
        >>> problems[0].id, problems[0].answer  # doctest: +SKIP
        ('gsm8k-test-0000', '18')
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    path = suite_path(name, split=split, data_dir=data_dir)
    _, question_field, answer_field = _FILES[name][split]
    if not path.is_file():
        raise ConfigError(f"data file not found: {path} (set {DATA_DIR_ENV} to the folder that holds {name}/)")
    problems: list[Problem] = []
    with path.open("rb") as f:
        for line_no, line in enumerate(f, start=1):
            if limit is not None and len(problems) >= limit:
                break
            if not line.strip():
                continue
            record = _parse_line(line, path, line_no)
            question = record.get(question_field)
            gold = _gold(record.get(answer_field), from_solution=answer_field == "answer")
            if not isinstance(question, str) or gold is None:
                raise ConfigError(
                    f"{path}:{line_no}: expected a text {question_field!r} and a numeric {answer_field!r}"
                )
            problems.append(Problem(f"{name}-{split}-{len(problems):04d}", question, gold))
    return problems


def _suite(name: str) -> dict[str, tuple[str, str, str]]:
    try:
        return _FILES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}") from None


def _data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    raw = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not raw:
        raise ConfigError(f"no data dir: set {DATA_DIR_ENV} to the folder that holds the suites")
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data dir not found: {path} (set {DATA_DIR_ENV} to the folder that holds the suites)")
    return path


def _parse_line(line: bytes, path: Path, line_no: int) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path}:{line_no}: invalid JSON ({e})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}:{line_no}: expected a JSON object")
    return record


def _gold(raw: object, *, from_solution: bool) -> str | None:
    # GSM8K answers are worked solutions whose last line is "#### N".
    if from_solution and isinstance(raw, str):
        _, sep, tail = raw.rpartition("####")
        return normalize_number(tail) if sep else None
    if isinstance(raw, (str, int, float)):
        return normalize_number(raw)
    return None
