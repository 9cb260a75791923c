"""The benchmarks' own arithmetic, and a small end-to-end run of each (SIMULATED model)."""

from __future__ import annotations

import json
from pathlib import Path

from hyperteam.bench import orchestration, prefix
from hyperteam.bench.ideal import ideal_wall_time
from hyperteam.bench.prefix import PrefixTrie, prefix_reuse
from tests.conftest import needs_data


def test_ideal_wall_time_replays_stages_through_the_slots():
    one = [[1.0, 1.0], [0.5]]  # two parallel calls, then one
    assert ideal_wall_time([one], slots=4, problem_slots=1) == 1.5
    assert ideal_wall_time([one], slots=1, problem_slots=1) == 2.5
    assert ideal_wall_time([one] * 4, slots=2, problem_slots=4) == 5.0  # 10 call-seconds over 2 slots
    assert ideal_wall_time([one] * 4, slots=8, problem_slots=2) == 3.0  # two waves of two problems


def test_prefix_reuse_counts_tokens_already_sent():
    trie = PrefixTrie()
    assert trie.add(["a", "b", "c"]) == 0
    assert trie.add(["a", "b", "d"]) == 2
    assert trie.add(["a", "b", "c", "e"]) == 3
    system = {"role": "system", "content": "shared rules"}
    prompts = [[system, {"role": "user", "content": "q1 agent A"}], [system, {"role": "user", "content": "q1 agent B"}]]
    reused, total = prefix_reuse(prompts)
    # 13 tokens each (markers: 4 per message); the second shares all but "B" and its end marker.
    assert total == 2 * 13 and reused == 13 - 2


@needs_data
def test_orchestration_bench_writes_its_json(tmp_path: Path, data_dir: Path):
    out = tmp_path / "orch.json"
    argv = ["--problems", "12", "--concurrency", "4", "--ttft-ms", "5", "--per-token-ms", "0.1"]
    assert orchestration.main([*argv, "--baselines", "asyncio", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["calls"] == 48 and report["simulated"] is True
    assert 0 < report["ideal_s"] <= report["wall_s"] * 1.05
    assert set(report["baselines"]) == {"asyncio"} and report["baselines"]["asyncio"]["calls"] == 48


@needs_data
def test_prefix_layout_lets_a_cache_reuse_most_prompt_tokens(tmp_path: Path, data_dir: Path):
    out = tmp_path / "prefix.json"
    teams_arg = "single,ann-gsm8k,moa,hypergraph-gsm8k,complete"
    assert prefix.main(["--problems", "10", "--teams", teams_arg, "--json", str(out)]) == 0
    teams = json.loads(out.read_text())["teams"]
    assert teams["ann-gsm8k"]["calls"] == 40 and teams["single"]["calls"] == 10
    for name in ("ann-gsm8k", "moa", "hypergraph-gsm8k"):
        assert teams[name]["prefix_reuse"] >= 0.6, (name, teams[name])
    # The same five agents and three rounds: the sparse hypergraph sends fewer prompt tokens.
    assert teams["hypergraph-gsm8k"]["calls"] == teams["complete"]["calls"] == 150
    assert teams["hypergraph-gsm8k"]["prompt_tokens"] < teams["complete"]["prompt_tokens"]


def test_eval_bench_runs_the_real_cli_and_replays_its_traces(tmp_path: Path):
    from hyperteam.bench import eval_run

    out = tmp_path / "eval.json"
    argv = ["--suite", "demo", "--team", "single", "--concurrency", "8", "--ttft-ms", "5", "--per-token-ms", "0.1"]
    assert eval_run.main([*argv, "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["problems"] == 30 and row["calls"] == 30 and row["simulated"] is True
    assert 0 < row["ideal_s"] <= row["wall_s"] * 1.05 < row["process_s"]
