"""Pictures of teams: Mermaid and DOT text, PNG drawings, and the ``show`` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import hyperteam as ht
from hyperteam.topologies import HypergraphTeam, draw, to_dot, to_mermaid

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["alice", "bob", "carol", "dave", "eve"]
# Five agents, five hyperedges of three: the case a picture must keep readable.
FIVE = [[NAMES[i], NAMES[(i + 1) % 5], NAMES[(i + 2) % 5]] for i in range(5)]


def _hypergraph() -> HypergraphTeam:
    return HypergraphTeam([ht.Agent(name=n) for n in NAMES], FIVE, rounds=2, name="five")


def _dot_structure(text: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    """Checks DOT text line by line; returns the declared node ids and the edges."""
    lines = text.strip().splitlines()
    assert re.fullmatch(r'(di)?graph "[^"]+" \{', lines[0]) and lines[-1] == "}"
    assert text.count("{") == text.count("}")
    nodes, edges = set(), []
    for line in lines[1:-1]:
        if m := re.fullmatch(r"\s+(\w+) \[label=\"[^\"]*\", .*\];", line):
            nodes.add(m[1])
        elif m := re.fullmatch(r"\s+(\w+) (--|->) (\w+);", line):
            edges.append((m[1], m[2], m[3]))
        else:
            assert re.fullmatch(r"\s+(subgraph cluster_\d+ \{|\}|\w+=.*;|label=.*;|node \[.*\];)", line), line
    assert all(src in nodes and dst in nodes for src, _, dst in edges)
    return nodes, edges


def test_mermaid_of_a_hypergraph_shows_every_agent_and_hyperedge():
    text = to_mermaid(_hypergraph())
    assert text.startswith("---\ntitle: ") and "\nflowchart LR\n" in text
    assert "2 rounds (parallel), fusion majority_vote" in text
    for j, name in enumerate(NAMES):
        assert f'a{j}["{name}"]' in text
    for i in range(5):
        assert f'e{i}(("e{i}"))' in text
    links = re.findall(r"^  (e\d) --- (a\d)$", text, flags=re.M)
    assert len(links) == 15 and ("e0", "a0") in links and ("e4", "a1") in links


def test_mermaid_of_a_layered_team_has_a_subgraph_and_fusion_per_layer():
    text = to_mermaid(ht.load_team("ann-gsm8k"))
    assert text.count("subgraph ") == 2 == len(re.findall(r"^  end$", text, flags=re.M))
    assert '"layer 1: solve"' in text and '"layer 2: verify"' in text
    assert text.count('{{"majority_vote"}}') == 2
    assert "task --> L0_a0" in text and "L0_fusion --> L1_a0" in text and "L1_fusion --> answer" in text
    for name in ("tutor", "algebraist", "accountant", "verifier"):
        assert f'["{name}"]' in text


def test_dot_of_a_hypergraph_is_an_undirected_bipartite_graph():
    text = to_dot(_hypergraph())
    nodes, edges = _dot_structure(text)
    assert nodes == {f"a{j}" for j in range(5)} | {f"e{i}" for i in range(5)}
    assert len(edges) == 15 and {op for _, op, _ in edges} == {"--"}
    assert all(src.startswith("e") and dst.startswith("a") for src, _, dst in edges)
    for name in NAMES:
        assert f'label="{name}"' in text


def test_dot_of_a_layered_team_has_clusters_and_arrows():
    text = to_dot(ht.load_team("ann-gsm8k"))
    nodes, edges = _dot_structure(text)
    assert text.startswith('digraph "ann-gsm8k" {') and "subgraph cluster_1 {" in text
    assert {"task", "answer", "L0_fusion", "L1_fusion"} <= nodes
    assert len(edges) == 3 + 3 + 1 + 1 + 1 and {op for _, op, _ in edges} == {"->"}


def test_labels_are_escaped():
    team = ht.LayeredTeam([ht.Layer('say "hi"', agents=[ht.Agent(name="a")])], name='the "best"')
    assert '"layer 1: say \\"hi\\""' in to_dot(team)
    assert "say #quot;hi#quot;" in to_mermaid(team)


def test_an_unknown_team_kind_has_no_picture():
    class Other(ht.Team):
        pass

    with pytest.raises(ht.ConfigError, match="cannot picture a team of type Other"):
        to_mermaid(Other())


@pytest.mark.parametrize("team", [_hypergraph(), ht.load_team("ann-gsm8k")], ids=["hypergraph", "layered"])
def test_draw_writes_a_png(tmp_path: Path, team: ht.Team):
    pytest.importorskip("matplotlib")
    path = draw(team, tmp_path / "pics" / "team.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


def test_draw_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(ht.ConfigError, match=r"pip install 'hyperteam\[viz\]'"):
        draw(_hypergraph(), tmp_path / "team.png")


def _show(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hyperteam.cli_show", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_show_prints_mermaid_or_dot_for_a_team_file(tmp_path: Path):
    spec = tmp_path / "team.yaml"
    _hypergraph().save(spec)
    shown = _show("--team", str(spec))
    assert shown.returncode == 0, shown.stderr
    assert "flowchart LR" in shown.stdout and 'a4["eve"]' in shown.stdout
    dot = _show("--team", "ann-gsm8k", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith('digraph "ann-gsm8k" {')


def test_show_writes_a_png(tmp_path: Path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "team.png"
    shown = _show("--team", "ann-gsm8k", "--png", str(png))
    assert shown.returncode == 0, shown.stderr
    assert f"wrote {png}" in shown.stderr and "flowchart LR" in shown.stdout
    assert png.read_bytes().startswith(b"\x89PNG")


def test_show_with_a_bad_team_prints_one_line_and_exits_2(tmp_path: Path):
    shown = _show("--team", "no-such-team")
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr.startswith("hyperteam: error: no team file or built-in team") and shown.stderr.count("\n") == 1


def test_teams_export_themselves():
    import hyperteam as ht

    team = ht.load_team("hypergraph-gsm8k")
    assert team.to_mermaid() == ht.topologies.to_mermaid(team)
    assert "skeptic" in team.to_dot()
