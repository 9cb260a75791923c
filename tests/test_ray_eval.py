"""`hyperteam eval --ray`: the same results as without Ray, resume after a kill, and sweeps (one local Ray cluster)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperteam.cli import main as cli_main
from hyperteam.evals.store import ResultStore
from tests.conftest import DATA_DIR

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    # One cluster for the module: Ray takes seconds to start. The eval joins
    # it (`--ray local` reuses the Ray of its process; a subprocess gets its address).
    if DATA_DIR is None:
        pytest.skip("GSM8K data not found (set HYPERTEAM_DATA_DIR)")
    saved = os.environ.get("HYPERTEAM_DATA_DIR")
    os.environ["HYPERTEAM_DATA_DIR"] = str(DATA_DIR)  # before the workers start: they inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if saved is None:
        del os.environ["HYPERTEAM_DATA_DIR"]


def _rows(folder: Path) -> list[tuple]:
    store = ResultStore(folder / "results.sqlite")
    try:
        return [
            (
                r.problem_id,
                r.idx,
                r.prediction,
                r.answer_strict,
                r.correct_strict,
                r.prompt_tokens,
                r.calls,
                r.error_kind,
            )
            for r in store.rows()
        ]
    finally:
        store.close()


def _eval(out: Path, *more: str) -> int:
    return cli_main(
        ["eval", "gsm8k", "--limit", "200", "--model", "sim:0.7", "--out", str(out), "--no-progress", *more]
    )


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, cluster) -> Path:
    out = tmp_path_factory.mktemp("plain") / "run"
    assert _eval(out) == 0
    return out


def test_ray_gives_the_same_results_as_a_local_run(tmp_path: Path, plain_run: Path, capsys):
    assert _eval(tmp_path / "ray", "--ray", "local") == 0
    assert "run folder:" in capsys.readouterr().out
    expected = _rows(plain_run)
    assert len(expected) == 200
    assert _rows(tmp_path / "ray") == expected
    plain = json.loads((plain_run / "report.json").read_text())
    sharded = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert (sharded["n"], sharded["accuracy"], sharded["tokens"]) == (plain["n"], plain["accuracy"], plain["tokens"])


def test_a_ray_run_killed_midway_resumes_without_recomputing(tmp_path: Path, plain_run: Path, cluster: str):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hyperteam.cli", "eval", "gsm8k", "--limit", "200", "--model", "sim:0.7"]
    cmd += ["--out", str(out), "--no-progress", "--ray", cluster, "--concurrency", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = out / "results.sqlite"
    stored = 0
    try:
        deadline = time.monotonic() + 60
        while stored < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if db.exists():
                try:
                    stored = sqlite3.connect(db).execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # the table is not there yet
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read()
        proc.stderr.close()
    store = ResultStore(db)
    before = {r.problem_id: r.finished_at for r in store.rows()}
    store.close()
    assert 20 <= len(before) < 200, err  # killed mid-run, with finished problems kept
    assert _eval(out, "--ray", "local", "--resume") == 0
    assert _rows(out) == _rows(plain_run)
    store = ResultStore(db)
    after = {r.problem_id: r.finished_at for r in store.rows()}
    store.close()
    assert all(after[pid] == at for pid, at in before.items())  # nothing finished was computed again


def test_a_sweep_runs_each_setting_into_its_own_folder(tmp_path: Path, cluster, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "suite: gsm8k\nlimit: 20\nruns:\n"
        "  - {name: ann, team: ann-gsm8k, model: 'sim:0.7'}\n"
        "  - {name: single-09, team: single, model: 'sim:0.9'}\n"
    )
    out = tmp_path / "sweep"
    assert cli_main(["eval", "--sweep", str(sweep), "--ray", "local", "--out", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[1:3]] == [
        ["ann", "ann-gsm8k", "sim:0.7", "20"],
        ["single-09", "single", "sim:0.9", "20"],
    ]
    for name in ("ann", "single-09"):
        report = json.loads((out / name / "report.json").read_text())
        assert report["n"] == 20 and report["errors"] == 0
    assert cli_main(["eval", "--sweep", str(sweep), "--ray", "local", "--out", str(out)]) == 2  # exists: needs --resume


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    from hyperteam.errors import ConfigError
    from hyperteam.evals.distributed import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    with pytest.raises(ConfigError, match=r"--ray needs Ray: pip install 'hyperteam\[ray\]'"):
        connect("local")
