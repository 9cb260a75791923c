"""Suites that download themselves: ``datasets.load`` against a loopback stand-in for the Hugging Face hub."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperteam.errors import ConfigError
from hyperteam.evals import datasets
from tests.fake_suites import gsm8k_record
from tests.hub_standin import HubStandIn

GSM8K_TEST = ("openai/gsm8k", "main/test-00000-of-00001.parquet")


def _parquet(records: list[dict[str, str]]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buf)
    return buf.getvalue()


def _jsonl(records: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data dir, an empty data cache and HF cache, and the offline switch lifted; returns the data cache."""
    monkeypatch.delenv("HYPERTEAM_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HYPERTEAM_CACHE_DIR", str(tmp_path / "ht"))
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: an earlier test may have imported it offline.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "ht" / "data"


def test_gsm8k_downloads_its_1319_problems_once_then_loads_from_the_cache(online: Path, monkeypatch):
    records = [gsm8k_record(i, "test") for i in range(1319)]  # generated, GSM8K-shaped: not the real data
    with HubStandIn({GSM8K_TEST: _parquet(records)}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        problems = datasets.load("gsm8k", split="test")
        assert len(problems) == 1319
        assert problems[0].answer == "18" and problems[0].question == records[0]["question"]
        assert problems[1318].id == "gsm8k-test-1318"
        assert ("GET", f"/datasets/openai/gsm8k/resolve/{_commit()}/main/test-00000-of-00001.parquet") in hub.requests
        # A HEAD to find the commit, then the file at that commit: nothing else is asked of the hub.
        assert all(path.startswith("/datasets/openai/gsm8k/resolve/") for _, path in hub.requests), hub.requests
    assert (online / "gsm8k" / "test.jsonl").is_file()
    assert datasets.is_available("gsm8k")
    # The stand-in is stopped: the second load reads the cache, and goes nowhere near the network.
    again = datasets.load("gsm8k", split="test")
    assert [(p.id, p.question, p.answer) for p in again] == [(p.id, p.question, p.answer) for p in problems]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(datasets.load("gsm8k", split="test", limit=5)) == 5


def test_a_short_download_is_refused_and_nothing_is_cached(online: Path, monkeypatch):
    records = [gsm8k_record(i, "test") for i in range(1318)]
    with HubStandIn({GSM8K_TEST: _parquet(records)}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ConfigError) as err:
            datasets.load("gsm8k", split="test")
    assert "1318 records" in str(err.value) and "expected 1319" in str(err.value)
    assert "nothing cached" in str(err.value)
    assert not (online / "gsm8k" / "test.jsonl").exists()


def test_gsm_hard_and_multiarith_come_from_their_hub_repos(online: Path, monkeypatch):
    hard = [{"input": f"Q{i}: 2 * {i}?", "code": "", "target": float(2 * i)} for i in range(1319)]
    train = [{"question": f"Train {i}: {i} + 1?", "final_ans": str(i + 1)} for i in range(420)]
    test = [{"question": f"Test {i}: {i} + 2?", "final_ans": str(i + 2)} for i in range(180)]
    files = {
        ("reasoning-machines/gsm-hard", "gsmhardv2.jsonl"): _jsonl(hard),
        ("ChilleD/MultiArith", "train.json"): json.dumps(train).encode(),
        ("ChilleD/MultiArith", "test.json"): json.dumps(test).encode(),
    }
    with HubStandIn(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        got_hard = datasets.load("gsm-hard")
        got_arith = datasets.load("multiarith")
    assert len(got_hard) == 1319 and got_hard[7].answer == "14"  # 14.0 -> "14"
    assert len(got_arith) == 600
    assert got_arith[0].question == "Train 0: 0 + 1?" and got_arith[420].question == "Test 0: 0 + 2?"
    assert got_arith[599].answer == "181"


def test_offline_with_nothing_cached_is_one_line_that_says_what_to_do(online: Path, monkeypatch):
    with HubStandIn({GSM8K_TEST: b""}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ConfigError) as err:
            datasets.load("gsm8k", split="test")
        assert hub.requests == []  # offline means no request at all
    message = str(err.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE" in message and "HYPERTEAM_DATA_DIR" in message and "'demo'" in message


def test_an_unreachable_hub_fails_fast(online: Path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot reach the Hugging Face hub at http://127\.0\.0\.1") as err:
        datasets.load("gsm8k", split="test")
    assert time.monotonic() - start < 5
    assert "HYPERTEAM_DATA_DIR" in str(err.value)


def test_a_missing_file_on_the_hub_names_it(online: Path, monkeypatch):
    with HubStandIn({("openai/gsm8k", "README.md"): b"hi"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ConfigError, match=r"test-00000-of-00001\.parquet"):
            datasets.load("gsm8k", split="test")


def test_a_data_dir_wins_and_the_hub_is_never_asked(online: Path, monkeypatch, tmp_path: Path):
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text(json.dumps(gsm8k_record(0, "test")) + "\n")
    with HubStandIn({GSM8K_TEST: b""}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HYPERTEAM_DATA_DIR", str(tmp_path / "data"))
        assert [p.answer for p in datasets.load("gsm8k", split="test")] == ["18"]
        with pytest.raises(ConfigError, match="data file not found"):
            datasets.load("gsm8k", split="train")  # absent from the data dir: an error, not a download
        assert hub.requests == []


def _commit() -> str:
    from tests.hub_standin import COMMIT

    return COMMIT
