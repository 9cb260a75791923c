"""`hyperteam bench vllm`: its plumbing against the SIMULATED stand-in, and a clean skip without a GPU or vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperteam.cli import main as cli_main


def test_bench_vllm_reports_throughput_and_prefix_hits_on_the_standin(data_dir, tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "vllm", "--model-dir", "/models/Qwen2.5-0.5B-Instruct", "--standin", "--problems", "12"]
    assert cli_main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SIMULATED stand-in, not vLLM" in printed
    result = json.loads(out.read_text())
    assert result["simulated"] is True
    assert [r["team"] for r in result["teams"]] == ["ann-gsm8k", "hypergraph-gsm8k"]
    for row in result["teams"]:
        assert row["problems"] == 12 and row["errors"] == 0
        assert row["output_tokens_per_s"] > 0 and row["problems_per_s"] > 0
        assert 0 < row["prefix_cache_hit_rate"] < 1  # agents of a problem share its prefix


def test_bench_vllm_skips_cleanly_without_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("HYPERTEAM_VLLM_BIN", str(tmp_path / "no-such-vllm"))
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "vllm", "--model-dir", str(tmp_path), "--json", str(out)]) == 0
    assert capsys.readouterr().out.startswith("bench vllm: SKIPPED: vLLM is not installed")
    assert "skipped" in json.loads(out.read_text())
