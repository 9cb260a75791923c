"""Pictures of a team: Mermaid and Graphviz DOT text, and a PNG drawing.

Both kinds of team become one small diagram (nodes, clusters, edges), which
each format renders. A layered team reads left to right: the task, each layer
as a cluster of its agents with its fusion node, then the answer. A hypergraph
team is bipartite: its agents, and one node per hyperedge (``e0``, ``e1``, ...)
linked to the hyperedge's members.

Example:
    >>> import hyperteam as ht
    >>> from hyperteam.topologies.export import to_mermaid
    >>> team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a")])])
    >>> print(to_mermaid(team).splitlines()[3])
    flowchart LR
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hyperteam.errors import ConfigError
from hyperteam.fusion import get_fusion
from hyperteam.topologies.hypergraph import HypergraphTeam
from hyperteam.topologies.layered import LayeredTeam
from hyperteam.topologies.team import Team

NodeKind = Literal["io", "agent", "fusion", "hyperedge"]


@dataclass(slots=True)
class DiagramNode:
    id: str
    label: str
    kind: NodeKind
    cluster: int | None = None


@dataclass(slots=True)
class Diagram:
    """A team's structure, independent of the output format."""

    kind: Literal["layered", "hypergraph"]
    title: str
    directed: bool
    nodes: list[DiagramNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, DiagramNode]:
        return {n.id: n for n in self.nodes}


def diagram(team: Team) -> Diagram:
    """The nodes, clusters and edges that picture ``team``.

    Node ids are positional (``L0_a1``, ``a3``, ``e0``), never agent names, so an
    agent called ``e0`` cannot collide with a hyperedge.

    Raises:
        ConfigError: a team kind with no picture.
    """
    if isinstance(team, LayeredTeam):
        return _layered(team)
    if isinstance(team, HypergraphTeam):
        return _hypergraph(team)
    raise ConfigError(f"cannot picture a team of type {type(team).__name__}: layered and hypergraph teams only")


def _layered(team: LayeredTeam) -> Diagram:
    n = len(team.layers)
    d = Diagram("layered", f"{team.name}: layered team, {n} layer{'s' * (n != 1)}", directed=True)
    d.nodes.append(DiagramNode("task", "task", "io"))
    previous = ["task"]
    for i, layer in enumerate(team.layers):
        d.clusters.append(f"layer {i + 1}: {layer.name}")
        ids = [f"L{i}_a{j}" for j in range(len(layer.agents))]
        d.nodes.extend(DiagramNode(id_, a.name, "agent", i) for id_, a in zip(ids, layer.agents, strict=True))
        fusion = f"L{i}_fusion"
        d.nodes.append(DiagramNode(fusion, get_fusion(layer.fusion).name, "fusion"))
        d.edges.extend((src, dst) for src in previous for dst in ids)
        d.edges.extend((src, fusion) for src in ids)
        previous = [fusion]
    d.nodes.append(DiagramNode("answer", "answer", "io"))
    d.edges.append((previous[0], "answer"))
    return d


def _hypergraph(team: HypergraphTeam) -> Diagram:
    rounds = f"{team.rounds} round{'s' * (team.rounds != 1)}"
    title = f"{team.name}: hypergraph team, {rounds} ({team.schedule}), fusion {get_fusion(team.fusion).name}"
    d = Diagram("hypergraph", title, directed=False)
    ids = {a.name: f"a{j}" for j, a in enumerate(team.agents)}
    d.nodes.extend(DiagramNode(ids[a.name], a.name, "agent") for a in team.agents)
    for i, members in enumerate(team.hyperedges):
        d.nodes.append(DiagramNode(f"e{i}", f"e{i}", "hyperedge"))
        d.edges.extend((f"e{i}", ids[m]) for m in members)
    return d


_MERMAID_SHAPES = {"io": '(["{}"])', "agent": '["{}"]', "fusion": '{{{{"{}"}}}}', "hyperedge": '(("{}"))'}


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(team: Team) -> str:
    """A Mermaid flowchart of ``team`` (renders on GitHub, in docs and in the Mermaid live editor)."""
    d = diagram(team)
    lines = ["---", f"title: {json.dumps(d.title)}", "---", "flowchart LR"]

    def node(n: DiagramNode, indent: str) -> str:
        return indent + n.id + _MERMAID_SHAPES[n.kind].format(_mermaid_label(n.label))

    for c, label in enumerate(d.clusters):
        lines.append(f'  subgraph C{c}["{_mermaid_label(label)}"]')
        lines.extend(node(n, "    ") for n in d.nodes if n.cluster == c)
        lines.append("  end")
    lines.extend(node(n, "  ") for n in d.nodes if n.cluster is None)
    arrow = "-->" if d.directed else "---"
    lines.extend(f"  {src} {arrow} {dst}" for src, dst in d.edges)
    styles = {"fusion": "fill:#fff4d6,stroke:#b8860b", "hyperedge": "fill:#ffe0b2,stroke:#e65100", "io": "fill:#eee"}
    for kind, style in styles.items():
        members = [n.id for n in d.nodes if n.kind == kind]
        if members:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


_DOT_ATTRS = {
    "io": 'shape=oval, style=filled, fillcolor="#eeeeee"',
    "agent": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "fusion": 'shape=hexagon, style=filled, fillcolor="#fff4d6"',
    "hyperedge": 'shape=circle, style=filled, fillcolor="#ffe0b2", fixedsize=true, width=0.5',
}


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(team: Team) -> str:
    """A Graphviz DOT graph of ``team`` (``dot -Tsvg``; ``neato`` suits hypergraph teams)."""
    d = diagram(team)
    keyword, arrow = ("digraph", "->") if d.directed else ("graph", "--")
    lines = [
        f"{keyword} {_dot_string(team.name)} {{",
        f"  label={_dot_string(d.title)};",
        "  labelloc=t;",
        "  rankdir=LR;" if d.directed else "  overlap=false;",
        '  node [fontname="Helvetica"];',
    ]

    def node(n: DiagramNode, indent: str) -> str:
        return f"{indent}{n.id} [label={_dot_string(n.label)}, {_DOT_ATTRS[n.kind]}];"

    for c, label in enumerate(d.clusters):
        lines.append(f"  subgraph cluster_{c} {{")
        lines.append(f'    label={_dot_string(label)}; style="rounded,filled"; fillcolor="#eef3fb";')
        lines.extend(node(n, "    ") for n in d.nodes if n.cluster == c)
        lines.append("  }")
    lines.extend(node(n, "  ") for n in d.nodes if n.cluster is None)
    lines.extend(f"  {src} {arrow} {dst};" for src, dst in d.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(team: Team, path: str | Path, *, dpi: int = 150) -> Path:
    """Draws ``team`` to an image file (PNG; ``.svg`` and ``.pdf`` by the file's suffix).

    Needs matplotlib (``pip install 'hyperteam[viz]'``); it draws with the Agg
    backend and leaves pyplot's global state alone.

    Raises:
        ConfigError: matplotlib is missing, the team kind has no picture, or the file cannot be written.
    """
    from hyperteam.topologies._draw import render_png

    d = diagram(team)
    return render_png(d, Path(path), dpi=dpi)
