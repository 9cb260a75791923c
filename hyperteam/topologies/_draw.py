"""Drawing a team diagram with networkx and matplotlib (Agg), imported only when drawing.

One data unit is one inch of the figure, so text sizes and node spacing stay
in proportion whatever the team's size. Labels are boxed text; edges are
clipped to the boxes they join, so arrows never hide a name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError
from hyperteam.topologies.export import Diagram, DiagramNode

_BOX = {
    "io": {"boxstyle": "round,pad=0.35", "fc": "#eeeeee", "ec": "#555555"},
    "agent": {"boxstyle": "round,pad=0.35", "fc": "#ffffff", "ec": "#1f3b73", "lw": 1.4},
    "fusion": {"boxstyle": "round4,pad=0.35", "fc": "#fff4d6", "ec": "#b8860b", "lw": 1.2},
}
_DOT = 24  # the diameter of a hyperedge's dot, in points


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("drawing a team needs matplotlib: pip install 'hyperteam[viz]'") from None
    return Figure, FigureCanvasAgg


def render_png(d: Diagram, path: Path, *, dpi: int = 150) -> Path:
    figure_cls, canvas_cls = _matplotlib()
    import networkx as nx

    graph = nx.DiGraph() if d.directed else nx.Graph()
    for n in d.nodes:
        graph.add_node(n.id, node=n)
    graph.add_edges_from(d.edges)
    pos = _layered_positions(d) if d.kind == "layered" else _hypergraph_positions(d, graph)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    margin = 0.9
    width, height = max(xs) - min(xs) + 2 * margin, max(ys) - min(ys) + 2 * margin + 0.4
    fig = figure_cls(figsize=(max(width, 3.0), max(height, 2.0)))
    canvas_cls(fig)  # the Agg canvas: no display, no global pyplot state
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) - margin, min(xs) - margin + max(width, 3.0))
    ax.set_ylim(min(ys) - margin, min(ys) - margin + max(height, 2.0))
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(d.title, fontsize=12, y=1.0, pad=-16)
    if d.kind == "layered":
        _draw_layered(ax, d, graph, pos)
    else:
        _draw_hypergraph(ax, d, graph, pos)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot write the drawing to {str(path)!r}: {exc}") from None
    return path


def _text_width(label: str, fontsize: float = 10) -> float:
    # An estimate in inches (a character is about 0.6 em), enough to size clusters around labels.
    return 0.6 * fontsize / 72 * len(label) + 0.25


def _layered_positions(d: Diagram) -> dict[str, tuple[float, float]]:
    columns: list[list[DiagramNode]] = []
    for n in d.nodes:
        # Nodes come in flow order: task, then per layer its agents and its fusion, then the answer.
        if not columns or n.kind != "agent" or columns[-1][-1].kind != "agent":
            columns.append([])
        columns[-1].append(n)
    widest = max(_text_width(n.label) for n in d.nodes)
    step = max(1.8, widest + 0.9)
    pos = {}
    for c, column in enumerate(columns):
        for k, n in enumerate(column):
            pos[n.id] = (c * step, ((len(column) - 1) / 2 - k) * 0.85)
    return pos


def _hypergraph_positions(d: Diagram, graph: Any) -> dict[str, tuple[float, float]]:
    agents = [n.id for n in d.nodes if n.kind == "agent"]
    edges = [n.id for n in d.nodes if n.kind == "hyperedge"]
    radius = max(1.6, 0.36 * len(agents), max(_text_width(n.label) for n in d.nodes) * 1.2)
    # Agents clockwise from the top, in team order.
    angle = {a: math.pi / 2 - 2 * math.pi * k / len(agents) for k, a in enumerate(agents)}
    pos = {a: (radius * math.cos(angle[a]), radius * math.sin(angle[a])) for a in agents}
    # Each hyperedge starts at the middle of its members (kept well inside the ring of agents),
    # then hyperedges that crowd each other or an agent are pushed apart until all are legible.
    inner = 0.72 * radius
    spot = {}
    for k, e in enumerate(edges):
        members = [pos[m] for m in graph.neighbors(e)]
        x, y = sum(p[0] for p in members) / len(members), sum(p[1] for p in members) / len(members)
        spot[e] = _clamp(x * (0.6 if len(members) == 1 else 1.0), y * (0.6 if len(members) == 1 else 1.0), inner)
        if math.hypot(*spot[e]) < 1e-6:  # a centre shared by opposite members: start off-centre, by index
            spot[e] = _clamp(0.3 * math.cos(k), 0.3 * math.sin(k), inner)
    gap = 0.6
    for _ in range(200):
        moved = False
        for i, e in enumerate(edges):
            others = [spot[f] for f in edges[i + 1 :]] + [pos[a] for a in agents]
            for k, (ox, oy) in enumerate(others):
                (x, y), shared = spot[e], k < len(edges) - i - 1
                dist = math.hypot(x - ox, y - oy)
                if dist >= gap:
                    continue
                ux, uy = ((x - ox) / dist, (y - oy) / dist) if dist > 1e-9 else (math.cos(i), math.sin(i))
                push = (gap - dist) / (2 if shared else 1)
                spot[e] = _clamp(x + ux * push, y + uy * push, inner)
                if shared:
                    f = edges[i + 1 + k]
                    spot[f] = _clamp(ox - ux * push, oy - uy * push, inner)
                moved = True
        if not moved:
            break
    return {**pos, **spot}


def _clamp(x: float, y: float, limit: float) -> tuple[float, float]:
    r = math.hypot(x, y)
    return (x, y) if r <= limit else (x * limit / r, y * limit / r)


def _box(ax: Any, xy: tuple[float, float], label: str, box: dict[str, Any], **text: Any) -> Any:
    t = ax.text(*xy, label, ha="center", va="center", fontsize=10, bbox=dict(box), zorder=3, **text)
    return t.get_bbox_patch()


def _link(ax: Any, a: tuple[float, float], b: tuple[float, float], patches: tuple[Any, Any], **style: Any) -> None:
    props = {"patchA": patches[0], "patchB": patches[1], "shrinkA": 1, "shrinkB": 1, **style}
    # Drawn after the boxes (higher zorder), so the clipping reads their final size and place.
    ax.annotate("", xy=b, xytext=a, arrowprops=props, zorder=4)


def _draw_layered(ax: Any, d: Diagram, graph: Any, pos: dict[str, tuple[float, float]]) -> None:
    from matplotlib.patches import FancyBboxPatch

    for c, label in enumerate(d.clusters):
        members = [n for n in d.nodes if n.cluster == c]
        half = max(_text_width(n.label) for n in members) / 2 + 0.2
        xs, ys = [pos[n.id][0] for n in members], [pos[n.id][1] for n in members]
        x0, y0 = min(xs) - half, min(ys) - 0.4
        w, h = max(xs) + half - x0, max(ys) + 0.4 - y0
        ax.add_patch(FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0.05", fc="#eef3fb", ec="#8aa4d6", zorder=1))
        ax.text(x0 + w / 2, y0 + h + 0.12, label, ha="center", va="bottom", fontsize=9, color="#1f3b73")
    patches = {
        n.id: _box(ax, pos[n.id], n.label, _BOX[n.kind], style="italic" if n.kind == "fusion" else "normal")
        for n in d.nodes
    }
    for src, dst in graph.edges:
        _link(ax, pos[src], pos[dst], (patches[src], patches[dst]), arrowstyle="-|>", color="#555555", lw=1.0)


def _draw_hypergraph(ax: Any, d: Diagram, graph: Any, pos: dict[str, tuple[float, float]]) -> None:
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    edges = [n for n in d.nodes if n.kind == "hyperedge"]
    palette = colormaps["tab10" if len(edges) <= 10 else "tab20"]
    color = {e.id: palette(k % palette.N) for k, e in enumerate(edges)}
    labels = {n.id: n.label for n in d.nodes}
    for e in edges if len(edges) <= 6 else ():  # past a few, the regions only muddy the picture
        # A faint region over the members (they lie on a circle, so in angle order it is convex).
        corners = sorted((pos[m] for m in graph.neighbors(e.id)), key=lambda p: math.atan2(p[1], p[0]))
        if len(corners) >= 3:
            ax.add_patch(Polygon(corners, closed=True, fc=color[e.id], ec="none", alpha=0.07, zorder=0))
    patches = {}
    for n in d.nodes:
        if n.kind == "agent":
            alone = graph.degree(n.id) == 0
            style = {**_BOX["agent"], **({"ls": "--", "ec": "#888888"} if alone else {})}
            patches[n.id] = _box(ax, pos[n.id], n.label, style)
    for e in edges:
        # Every hyperedge is a dot of one size (a text box would grow with "e10"); lines stop at its rim.
        ax.scatter(*pos[e.id], s=_DOT**2, color=color[e.id], edgecolors="white", linewidths=1.5, zorder=5)
        size = 9 if len(e.label) <= 2 else 7.5
        ax.text(*pos[e.id], e.label, ha="center", va="center", color="white", fontsize=size, weight="bold", zorder=6)
        for m in graph.neighbors(e.id):
            style = {"arrowstyle": "-", "color": color[e.id], "lw": 2.2, "shrinkA": _DOT / 2}
            _link(ax, pos[e.id], pos[m], (None, patches[m]), **style)
    if edges:
        handles = [
            Line2D([], [], marker="o", ls="", ms=9, mfc=color[e.id], mec=color[e.id], label=_legend(e, graph, labels))
            for e in edges
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=9)


def _legend(e: DiagramNode, graph: Any, labels: dict[str, str]) -> str:
    return f"{e.label}: {', '.join(labels[m] for m in graph.neighbors(e.id))}"
