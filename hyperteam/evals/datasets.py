"""Math word-problem suites: GSM8K, GSM-Hard, MultiArith, the bundled ``demo``, and any JSON/JSONL file.

The third-party data sets are never part of the project. ``load`` finds a
split, in this order:

1. ``data_dir=`` or ``$HYPERTEAM_DATA_DIR`` when given: that folder and nothing else;
2. hyperteam's data cache (``hub.cache_dir()``), filled by an earlier download;
3. the Hugging Face hub, through ``huggingface_hub`` (``HF_ENDPOINT``,
   ``HF_HOME``, ``HF_HUB_OFFLINE`` apply): the record count is checked and the
   split cached, so the network is used once.

The ``demo`` suite (30 GSM8K-style problems written for hyperteam) ships
inside the package, and the ``generated`` suite (train 2000, test 1000
problems from templates, see :mod:`hyperteam.evals.generated`) is made on
the spot, so an eval or a training run needs no data at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from hyperteam.agents._numbers import normalize_number
from hyperteam.errors import ConfigError
from hyperteam.evals import hub

__all__ = ["SUITES", "Problem", "is_available", "load", "load_file", "splits", "suite_path"]

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

SUITES: tuple[str, ...] = (*_FILES, "demo", "generated")
_BUILT_IN = ("demo", "generated")  # need no file: bundled, or made from templates


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
    if name == "generated":
        return ("train", "test")
    return ("test",) if name == "demo" else tuple(_suite(name))


def suite_path(name: str, *, split: str = "test", data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Returns the file that holds one split of a suite (it may not exist yet).

    The file under ``data_dir`` or ``$HYPERTEAM_DATA_DIR`` when either is
    given, else the file in hyperteam's data cache.

    Raises:
        ConfigError: the suite or split is unknown, or the given data dir does not exist.
    """
    files = _suite(name)
    if split not in files:
        raise ConfigError(f"suite {name!r} has no split {split!r}; it has: {', '.join(files)}")
    base = _data_dir(data_dir)
    return (base if base is not None else hub.cache_dir()) / files[split][0]


def is_available(name: str, *, split: str = "test", data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``load`` would find the split without the network (``demo`` and ``generated`` always are).

    Example:
        >>> is_available("demo")
        True
    """
    if name in _BUILT_IN:
        return split in splits(name)
    try:
        return suite_path(name, split=split, data_dir=data_dir).is_file()
    except ConfigError:
        return False


def load(
    name: str,
    *,
    split: str = "test",
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Loads a suite's problems, in file order.

    Args:
        name: ``gsm8k``, ``gsm-hard``, ``multiarith``, ``demo`` or ``generated``.
        split: ``test`` or (gsm8k and generated only) ``train``.
        limit: keep only the first ``limit`` problems.
        data_dir: the folder holding the suites; defaults to ``$HYPERTEAM_DATA_DIR``,
            and when neither is set, the data cache, then a download from the hub.

    Returns:
        The problems, with normalised gold answers.

    Raises:
        ConfigError: unknown suite or split, a missing folder or file, offline
            with nothing cached (one line saying what to do), or a line that
            is not a valid record (the message names file and line).

    Example:
        >>> problems = load("gsm8k", split="test", limit=5)  # doctest: +SKIP
        >>> problems[0].id, problems[0].answer  # doctest: +SKIP
        ('gsm8k-test-0000', '18')
    """
    if name == "demo":
        if split != "test":
            raise ConfigError(f"suite 'demo' has no split {split!r}; it has: test")
        demo = resources.files("hyperteam.evals").joinpath("data/demo.jsonl")
        with resources.as_file(demo) as path:
            return _read(path, "question", "answer", prefix="demo-test", limit=limit)
    if name == "generated":
        if split not in splits(name):
            raise ConfigError(f"suite 'generated' has no split {split!r}; it has: train, test")
        from hyperteam.evals import generated

        return generated.split(split)[:limit]
    path = suite_path(name, split=split, data_dir=data_dir)
    _, question_field, answer_field = _FILES[name][split]
    if not path.is_file():
        if _data_dir(data_dir) is not None:
            raise ConfigError(f"data file not found: {path} (set {DATA_DIR_ENV} to the folder that holds {name}/)")
        hub.fetch(name, split, dest=path, question_field=question_field, answer_field=answer_field)
    return _read(path, question_field, answer_field, prefix=f"{name}-{split}", limit=limit)


def load_file(
    path: str | os.PathLike[str],
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    limit: int | None = None,
) -> list[Problem]:
    """Loads problems from any JSONL file (one object per line) or JSON file (a list of objects).

    The answer may be a number or a worked solution ending ``#### N``. Ids are
    ``<file stem>-<index>``.

    Raises:
        ConfigError: a missing file, or a record that is not valid (names file and line).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file not found: {p}")
    return _read(p, question_field, answer_field, prefix=p.stem, limit=limit)


def _read(path: Path, question_field: str, answer_field: str, *, prefix: str, limit: int | None) -> list[Problem]:
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    problems: list[Problem] = []
    for line_no, record in _records(path):
        if limit is not None and len(problems) >= limit:
            break
        question = record.get(question_field)
        gold = _gold(record.get(answer_field))
        if not isinstance(question, str) or gold is None:
            raise ConfigError(f"{path}:{line_no}: expected a text {question_field!r} and a numeric {answer_field!r}")
        problems.append(Problem(f"{prefix}-{len(problems):04d}", question, gold))
    return problems


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs from a JSONL file, or from a JSON file holding a list."""
    with path.open("rb") as f:
        head = f.read(1024).lstrip()
        f.seek(0)
        if path.suffix.lower() == ".json" and head.startswith(b"["):
            try:
                records = orjson.loads(f.read())
            except orjson.JSONDecodeError as e:
                raise ConfigError(f"{path}: invalid JSON ({e})") from None
            for i, record in enumerate(records, start=1):
                if not isinstance(record, dict):
                    raise ConfigError(f"{path}: item {i}: expected a JSON object")
                yield i, record
            return
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                yield line_no, _parse_line(line, path, line_no)


def _suite(name: str) -> dict[str, tuple[str, str, str]]:
    try:
        return _FILES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}") from None


def _data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data dir the caller or the environment names, or None: then the cache and the hub are used."""
    raw = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not raw:
        return None
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


def _gold(raw: object) -> str | None:
    # GSM8K answers are worked solutions whose last line is "#### N".
    if isinstance(raw, str) and "####" in raw:
        return normalize_number(raw.rpartition("####")[2])
    if isinstance(raw, (str, int, float)):
        return normalize_number(raw)
    return None
