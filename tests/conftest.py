"""Shared fixtures: the data folder, and small teams built on test doubles.

Tests need no external data. ``DATA_DIR`` is ``$HYPERTEAM_DATA_DIR`` when it
holds GSM8K (CI points it at the real files), else a folder of generated
GSM8K-shaped suites of the published sizes (``tests/fake_suites.py``). The few
tests about the real files' content take the ``real_data_dir`` fixture and are
marked ``slow``; without the real data they are deselected, and the run says so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.fake_suites import write_suites

ROOT = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    candidate = os.environ.get("HYPERTEAM_DATA_DIR")
    if candidate and (Path(candidate) / "gsm8k" / "test.jsonl").is_file():
        return Path(candidate)
    return None


def _generated_data_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="hyperteam-test-data-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return write_suites(root)


# No test may reach the real hub, nor read or fill the user's data cache: the
# hub tests run their own stand-in and lift the offline switch themselves.
_CACHE = Path(tempfile.mkdtemp(prefix="hyperteam-test-cache-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
# huggingface_hub's user-agent code fetches a registry from the real hub unless telemetry is off.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HYPERTEAM_CACHE_DIR"] = str(_CACHE)

REAL_DATA_DIR = _real_data_dir()
DATA_DIR: Path = REAL_DATA_DIR or _generated_data_dir()
# Kept for the tests that still name it: data is always there now, real or generated.
needs_data = pytest.mark.skipif(False, reason="data is always available (real or generated)")


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYPERTEAM_DATA_DIR", str(DATA_DIR))
    return DATA_DIR


@pytest.fixture
def real_data_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real suites (only ``slow`` tests use it; they are deselected when it is absent)."""
    assert REAL_DATA_DIR is not None  # deselected otherwise, in pytest_collection_modifyitems
    monkeypatch.setenv("HYPERTEAM_DATA_DIR", str(REAL_DATA_DIR))
    return REAL_DATA_DIR


_deselected_real: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The real-model lane (llama.cpp, minutes of CPU) runs only when asked for: pytest -m real.
    if "real" not in (config.getoption("markexpr", "") or ""):
        real = [item for item in items if item.get_closest_marker("real")]
        if real:
            config.hook.pytest_deselected(items=real)
            items[:] = [item for item in items if not item.get_closest_marker("real")]
    if REAL_DATA_DIR is not None:
        return
    keep, drop = [], []
    for item in items:
        (drop if "real_data_dir" in getattr(item, "fixturenames", ()) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        _deselected_real.extend(item.nodeid for item in drop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _deselected_real:
        terminalreporter.write_line(
            f"{len(_deselected_real)} slow tests about the real GSM8K files were deselected: "
            "set HYPERTEAM_DATA_DIR to the real suites to run them (CI does)"
        )
