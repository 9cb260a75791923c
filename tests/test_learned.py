"""Learned topologies (torch): the convolution, training signals, sampling, saving, and teams built from them."""

from __future__ import annotations

import itertools
import json
import math
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
from hyperteam.topologies.learned.layers import (  # noqa: E402
    hyperedges_from,
    hypergraph_conv,
    sample_top_k,
    top_k_choice,
)

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


def test_the_query_term_changes_nothing_until_trained_and_old_files_load(tmp_path: Path):
    queries = ["Janet's ducks lay 16 eggs per day", "A train covers 60 miles in 2 hours", "What is half of 10?"]
    gen = HypergraphGenerator(NAMES, seed=3).anchor_init()
    plain = HypergraphGenerator(NAMES, seed=3, relevance_rank=0).anchor_init()
    assert gen.relevance is not None and plain.relevance is None
    for q in queries:  # the warm start is the paper decoder's, exactly
        z = gen._latent(q, 0)[0]
        assert torch.equal(gen._logits(z, q), plain._logits(plain._latent(q, 0)[0], q))
        assert gen.best(q) == plain.best(q)
    # A file written before the term existed (no relevance_rank, no weights for it) loads with it at zero.
    data = json.loads(plain.save(tmp_path / "old.json").read_text())
    del data["config"]["relevance_rank"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_generator(tmp_path / "old.json")
    assert old.relevance is not None
    assert all(old.best(q) == plain.best(q) for q in queries)
    # Training moves it: the term is then part of the saved weights.
    fit(gen, PROBLEMS, reward=_reward, samples_per_query=4, epochs=2, batch=3)
    assert gen.relevance.query.weight.abs().sum().item() > 0
    again = load_generator(gen.save(tmp_path / "new.json"))
    assert all(again.best(q) == gen.best(q) for q in queries)


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


def _constant(problems, topologies):
    # Every topology earns the same: no advantage anywhere, only the regularisers act.
    return [[Outcome(1.0, 100.0) for _ in hs] for hs in topologies]


QUERIES = [f"Question {i}: Tom buys {i} apples for 3 dollars each and walks {i} miles." for i in range(40)]


def test_with_zero_advantage_the_warm_start_survives_training():
    """The issue's control: a constant reward used to erase the warm start into empty topologies."""
    gen = HypergraphGenerator(NAMES, seed=0).anchor_init()
    before = [gen.best(q) for q in QUERIES[:10]]
    problems = [Problem(id=f"q{i}", question=q, answer="1") for i, q in enumerate(QUERIES)]
    fit(gen, problems, reward=_constant, epochs=5)  # 25 steps, the trainer's defaults otherwise
    after = [gen.best(q) for q in QUERIES[:10]]
    chain = {frozenset(p) for p in itertools.pairwise(NAMES)}

    def pairs(edges: list[list[str]]) -> set[frozenset[str]]:
        return {frozenset((x, y)) for e in edges for x in e for y in e if x < y}

    for b, a in zip(before, after, strict=True):
        assert chain <= pairs(b) and chain <= pairs(a)  # every anchor pair still shares a hyperedge
        assert len(a) >= len(NAMES) - 1  # each agent with its top-2 partners, duplicates merged
    # Only the chain ends' second partner, a tie between equally unlikely agents, may change.
    assert sum(a != b for a, b in zip(after, before, strict=True)) <= 2
    assert all(gen.working_alone(q) == [] for q in QUERIES[:10])
    s = torch.sigmoid(gen.decoder.logits(gen._latent(QUERIES[0], 0)[0]))[0]
    assert all(s[i, i + 1].item() > 0.5 for i in range(len(NAMES) - 1))  # the anchor's affinities survive


def test_best_gives_each_agent_its_top_k_partners_unless_a_gate_wins_by_the_margin():
    inf = float("inf")
    logits = torch.tensor([[-inf, 3.0, 1.0, 0.0], [3.0, -inf, 2.0, 0.5], [1.0, 2.0, -inf, 0.2], [0.0, 0.5, 0.2, -inf]])
    low = torch.full((4,), -5.0)
    picks = top_k_choice(logits, low, torch.zeros(4), 2, margin=1.0)
    assert [sorted(torch.nonzero(r).flatten().tolist()) for r in picks] == [[1, 2], [0, 2], [0, 1], [1, 2]]
    # "another partner" must fall below -margin to cut the list to one.
    assert top_k_choice(logits, low, torch.full((4,), -0.9), 2, margin=1.0).sum(-1).tolist() == [2.0] * 4
    assert top_k_choice(logits, low, torch.full((4,), -1.1), 2, margin=1.0).sum(-1).tolist() == [1.0] * 4
    # "work alone" must pass +margin: at 0.9 nobody does, at 1.1 everybody does.
    assert top_k_choice(logits, torch.full((4,), 0.9), torch.zeros(4), 2, margin=1.0).sum().item() == 8
    assert top_k_choice(logits, torch.full((4,), 1.1), torch.zeros(4), 2, margin=1.0).sum().item() == 0


@pytest.mark.parametrize("seed", range(4))
def test_top_k_draws_and_their_log_prob(seed):
    inf = float("inf")
    logits = torch.tensor([[[-inf, 2.0, -1.0], [0.5, -inf, 0.0], [1.0, -3.0, -inf]]])
    alone, more = torch.tensor([[-1.0, 0.5, 2.0]]), torch.tensor([[0.0, -2.0, 1.0]])
    picks, log_prob, entropy = sample_top_k(
        logits, alone, more, 2, margin=1.0, generator=torch.Generator().manual_seed(seed)
    )
    expected = 0.0
    for i in range(3):
        chosen = torch.nonzero(picks[0, i]).flatten().tolist()
        p_alone = torch.sigmoid(alone[0, i] - 1.0).item()
        if not chosen:
            expected += math.log(p_alone)
            continue
        expected += math.log(1 - p_alone)
        row = logits[0, i]
        # The order of the two draws is not recorded; with two partners, sum over both orders.
        first_options = torch.log_softmax(row, 0)
        p_more = torch.sigmoid(more[0, i] + 1.0).item()
        if len(chosen) == 1:
            expected += first_options[chosen[0]].item() + math.log(1 - p_more)
        else:
            a, b = chosen
            both = sum(
                math.exp(first_options[x].item())
                * math.exp(first_options[y].item())
                / (1 - math.exp(first_options[x].item()))
                for x, y in ((a, b), (b, a))
            )
            expected += math.log(both) + math.log(p_more)
    if picks[0].sum(-1).max() <= 1:  # no agent took two partners: the draw order is the only one
        assert abs(log_prob.sum().item() - expected) < 1e-5
    assert (
        log_prob.shape == (1, 3) and picks.sum(-1).max() <= 2 and entropy.shape == (3, 1, 3)
    )  # "alone", first partner, "another"


def test_gdesigner_encodes_with_pairwise_graph_convolutions():
    from hyperteam.topologies.learned.layers import VariationalGraphEncoder, graph_adjacency

    gen = GDesignerGenerator(NAMES, seed=0)
    assert isinstance(gen.encoder, VariationalGraphEncoder)
    adj = graph_adjacency(3)
    assert torch.allclose(adj, adj.T)
    # D^-1/2 (A + I) D^-1/2 over the chain a-b-c plus a task node linked to all: degrees 3, 4, 3, 4.
    assert adj[0, 1].item() == pytest.approx(1 / math.sqrt(3 * 4))
    assert adj[0, 2].item() == 0.0 and adj[3, 3].item() == pytest.approx(1 / 4)
    assert not isinstance(HypergraphGenerator(NAMES).encoder, VariationalGraphEncoder)


def test_agents_credit_counts_each_agent_right_or_wrong():
    def reward(problems, topologies):
        return [[Outcome(0.0, 0.0, agents_right=0.6) for _ in hs] for hs in topologies]

    gen = HypergraphGenerator(NAMES, seed=0)
    optimizer = torch.optim.Adam(gen.parameters(), lr=0.003)
    assert train_step(gen, PROBLEMS, reward, 4, 0.0, optimizer)["utility"] == 0.0  # the team was wrong
    assert train_step(gen, PROBLEMS, reward, 4, 0.0, optimizer, credit="agents")["utility"] == pytest.approx(0.6)


def test_team_reward_reports_the_share_of_agents_right():
    from hyperteam.agents.agent import Agent
    from hyperteam.evals import datasets
    from hyperteam.optim.topology import TeamReward

    problem = datasets.load("demo", limit=1)[0]
    reward = TeamReward([Agent(name=n) for n in "abc"], rounds=2, model="sim:1.0")
    (outcome,) = reward([problem], [[[["a", "b"]]]])[0]
    assert outcome.correct == 1.0 and outcome.agents_right == 1.0 and outcome.tokens > 0
    (wrong,) = TeamReward([Agent(name=n) for n in "abc"], rounds=2, model="sim:0.0")([problem], [[[["a", "b"]]]])[0]
    assert wrong.agents_right == 0.0


def test_agents_credit_gives_each_agent_its_own_outcome():
    def reward(problems, topologies):
        # An agent is right when it shares a hyperedge with "a": its own answer, not the team's.
        def outcome(h):
            with_a = {m for e in h if "a" in e for m in e}
            agents = {n: float(n in with_a) for n in NAMES}
            return Outcome(0.0, 10.0, agents_right=sum(agents.values()) / len(agents), agents=agents)

        return [[outcome(h) for h in hs] for hs in topologies]

    gen = HypergraphGenerator(NAMES, seed=0).anchor_init()
    history = fit(gen, PROBLEMS * 8, reward=reward, credit="agents", epochs=4, batch=3, lr=0.01)
    assert all(p.grad is not None for p in gen.parameters())
    first, last = history[:4], history[-4:]
    assert sum(r["utility"] for r in last) > sum(r["utility"] for r in first)  # more agents join "a"
