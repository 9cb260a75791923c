"""Learned topologies (torch): the convolution, training signals, sampling, saving, and teams built from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hyperteam.errors import ConfigError  # noqa: E402
from hyperteam.evals.datasets import Problem  # noqa: E402
from hyperteam.optim.topology import Outcome  # noqa: E402
from hyperteam.optim.topology.reinforce import fit, train_step  # noqa: E402
from hyperteam.topologies.io import load_team  # noqa: E402
from hyperteam.topologies.learned import (  # noqa: E402
    AgentPruneGenerator,
    GDesignerGenerator,
    HypergraphGenerator,
    LearnedHypergraphTeam,
    TopologyLearner,
    load_generator,
)
from hyperteam.topologies.learned.layers import hyperedges_from, hypergraph_conv, sample_partners  # noqa: E402

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reference_conv(x, h, w, theta):
    """The formula with explicit diagonal matrices, in float64."""
    dv = torch.diag((h * w).sum(1))
    de = torch.diag(h.sum(0))
    dv_is = torch.linalg.inv(torch.sqrt(dv))
    return dv_is @ h @ torch.diag(w) @ torch.linalg.inv(de) @ h.T @ dv_is @ x @ theta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convolution_matches_a_float64_reference_of_the_formula(seed):
    g = torch.Generator().manual_seed(seed)
    v, e, f, f2 = 7, 5, 6, 4
    h = (torch.rand(v, e, generator=g) < 0.5).double()
    h[torch.arange(v), torch.arange(v) % e] = 1.0  # every node in a hyperedge, every hyperedge non-empty
    x = torch.randn(v, f, generator=g, dtype=torch.float64)
    w = torch.rand(e, generator=g, dtype=torch.float64) + 0.5
    theta = torch.randn(f, f2, generator=g, dtype=torch.float64)
    ref = _reference_conv(x, h, w, theta)
    got = hypergraph_conv(x, h, theta, w)
    assert (torch.linalg.norm(got - ref) / torch.linalg.norm(ref)).item() < 1e-6
    got32 = hypergraph_conv(x.float(), h.float(), theta.float(), w.float()).double()
    assert (torch.linalg.norm(got32 - ref) / torch.linalg.norm(ref)).item() < 1e-5


def _reward(problems, topologies):
    # Rewards linking "a" with "b" and charges for every member: enough signal for a gradient.
    return [
        [Outcome(float(any({"a", "b"} <= set(e) for e in h)), float(sum(len(e) for e in h))) for h in hs]
        for hs in topologies
    ]


PROBLEMS = [Problem(id=f"p{i}", question=f"question {i} about apples and trains", answer="1") for i in range(3)]


@pytest.mark.parametrize("cls", [HypergraphGenerator, GDesignerGenerator, AgentPruneGenerator])
def test_gradients_reach_every_trainable_tensor(cls):
    learner = cls(NAMES, seed=0)
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.01)
    record = train_step(learner, PROBLEMS, _reward, 6, 0.01, optimizer)
    params = dict(learner.named_parameters())
    assert params
    for name, p in params.items():
        assert p.grad is not None, name
        assert p.grad.abs().sum().item() > 0, name
    assert set(record) >= {"utility", "accuracy", "tokens_per_query", "hyperedges_per_query", "loss"}


def test_hyperedges_are_each_agent_with_its_top_k_partners_merged():
    invites = [[False, True, True, True], [True, False, True, False], [True, True, False, False], [False] * 4]
    scores = [[0, 0.9, 0.8, 0.7], [0.9, 0, 0.8, 0], [0.8, 0.8, 0, 0], [0, 0, 0, 0]]
    # a keeps b and c (its best two of three), b and c name the same group: one hyperedge; d invites no one.
    assert hyperedges_from(invites, scores, k=2) == [(0, 1, 2)]
    assert hyperedges_from(invites, scores, k=1) == [(0, 1), (0, 2)]


@pytest.mark.parametrize("seed", range(4))
def test_log_prob_of_a_sampled_hypergraph_is_that_of_its_draws(seed):
    # k = 1: each agent draws one partner or stops, from a softmax over its partners' logits and a stop logit 0.
    inf = float("inf")
    logits = torch.tensor([[[-inf, 2.0, -1.0], [0.5, -inf, 0.0], [1.0, -3.0, -inf]]])
    picks, log_prob = sample_partners(logits, 1, torch.Generator().manual_seed(seed))
    expected = 0.0
    for i in range(3):
        options = torch.cat([logits[0, i][torch.arange(3) != i], torch.zeros(1)])
        norm = torch.logsumexp(options, 0).item()
        chosen = [j for j in range(3) if picks[0, i, j] > 0]
        expected += (logits[0, i, chosen[0]].item() if chosen else 0.0) - norm
    assert abs(log_prob.item() - expected) < 1e-5
    assert picks.sum(-1).max() <= 1


def test_best_is_deterministic_and_survives_save_and_load(tmp_path: Path):
    gen = HypergraphGenerator(NAMES, seed=1).anchor_init()
    again = HypergraphGenerator(NAMES, seed=1).anchor_init()
    query = "Janet's ducks lay 16 eggs per day"
    assert gen.best(query) == again.best(query) == gen.best(query)
    assert gen.best(query)  # warm-started on the anchor chain: neighbours are linked
    path = gen.save(tmp_path / "topo.json")
    loaded = load_generator(path)
    assert isinstance(loaded, HypergraphGenerator) and loaded.k == 2
    assert loaded.best(query) == gen.best(query)
    prune = AgentPruneGenerator(NAMES, prune_every=1, prune_fraction=0.5)
    train_step(prune, PROBLEMS, _reward, 4, 0.01, torch.optim.Adam(prune.parameters(), lr=0.01))
    assert prune.pruned == 5  # half of the 10 edges, the cap
    reloaded = TopologyLearner.load(prune.save(tmp_path / "prune.json"))
    assert reloaded.pruned == 5 and reloaded.best("x") == prune.best("x")
    with pytest.raises(ConfigError, match="holds a 'agentprune' topology"):
        HypergraphGenerator.load(tmp_path / "prune.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a hyperteam topology file"):
        load_generator(tmp_path / "bad.json")


def test_fit_improves_utility_on_a_simple_reward():
    gen = HypergraphGenerator(NAMES, seed=0)
    history = fit(
        gen, PROBLEMS * 4, reward=_reward, samples_per_query=8, token_penalty=0.02, epochs=6, batch=3, lr=0.01
    )
    first, last = history[:5], history[-5:]
    assert sum(r["utility"] for r in last) / 5 > sum(r["utility"] for r in first) / 5
    with pytest.raises(ConfigError, match="samples_per_query must be >= 2"):
        fit(gen, PROBLEMS, reward=_reward, samples_per_query=1)


def test_builtin_hyperagent_team_runs_a_generated_hypergraph(data_dir):
    from hyperteam.evals import datasets

    team = load_team("hyperagent-gsm8k")
    problem = datasets.load("gsm8k", split="test", limit=1)[0]
    question = problem.question
    edges = team.topology_for(question)
    assert edges and all(set(e) <= {a.name for a in team.agents} for e in edges)
    result = team.run_sync(question, model="sim:1.0")
    assert result.answer == problem.answer
    assert result.usage.calls == 15  # 5 agents x 3 rounds; majority vote makes no call


def test_spec_with_a_learned_topology_file(tmp_path: Path):
    gen = GDesignerGenerator(NAMES, seed=0)
    gen.save(tmp_path / "topo.json")
    spec = tmp_path / "sub" / "team.yaml"
    spec.parent.mkdir()
    spec.write_text("name: learned\ntopology: {learned: ../topo.json}\nrounds: 2\nfusion: majority_vote\n")
    team = load_team(spec)
    assert isinstance(team, LearnedHypergraphTeam)
    assert [a.name for a in team.agents] == NAMES  # taken from the topology file
    result = team.run_sync("What is 2 + 3?", model="sim:0.9")
    assert result.usage.calls == 10
    saved = tmp_path / "again.json"
    team.save(saved)
    assert json.loads(saved.read_text())["topology"]["learned"].endswith("topo.json")
    (tmp_path / "wrong.yaml").write_text(
        "topology: {learned: topo.json}\nagents: [{name: x}, {name: y}]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="learned for agents a, b, c, d, e"):
        load_team(tmp_path / "wrong.yaml").compile()
    (tmp_path / "none.yaml").write_text("kind: hypergraph\ntopology: {seed: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs agents"):
        load_team(tmp_path / "none.yaml")


def test_torch_stays_out_of_import_hyperteam_and_its_absence_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    code = "import sys, hyperteam; hyperteam.load_team('hyperagent-gsm8k'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    monkeypatch.setitem(sys.modules, "torch", None)
    from hyperteam.topologies.learned._torch import require_torch

    with pytest.raises(ConfigError, match=r"pip install 'hyperteam\[learn\]'"):
        require_torch()
