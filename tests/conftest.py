"""Shared fixtures: the data folder, and small teams built on test doubles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    for candidate in (os.environ.get("HYPERTEAM_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "gsm8k" / "test.jsonl").is_file():
            return Path(candidate)
    return None


DATA_DIR = _data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="GSM8K data not found (set HYPERTEAM_DATA_DIR)")


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    if DATA_DIR is None:
        pytest.skip("GSM8K data not found (set HYPERTEAM_DATA_DIR)")
    monkeypatch.setenv("HYPERTEAM_DATA_DIR", str(DATA_DIR))
    return DATA_DIR
