"""The classic communication topologies as networkx graphs over agent names.

Chains, trees and layered graphs are directed (who passes to whom); stars,
complete and random graphs are undirected. :func:`to_hyperedges` turns any of
them into the 2-edges of a :class:`~hyperteam.topologies.hypergraph.HypergraphTeam`.

Example:
    >>> from hyperteam.topologies import graphs
    >>> graphs.to_hyperedges(graphs.star(["hub", "a", "b"]))
    [['hub', 'a'], ['hub', 'b']]
"""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Sequence

import networkx as nx

from hyperteam.errors import ConfigError


def _names(names: Sequence[str], what: str = "names") -> list[str]:
    if isinstance(names, str):
        raise ConfigError(f"{what} must be a list of agent names, not the string {names!r}")
    names = list(names)
    if not names:
        raise ConfigError(f"{what}: a graph needs at least one agent name")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ConfigError(f"{what}: agent names are non-empty strings, got {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{what}: duplicate agent names: {', '.join(dupes)}")
    return names


def chain(names: Sequence[str]) -> nx.DiGraph:
    """A directed path ``names[0] -> names[1] -> ...`` (n - 1 edges)."""
    names = _names(names)
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from(itertools.pairwise(names))
    return graph


def star(names: Sequence[str], center: str | None = None) -> nx.Graph:
    """An undirected star: ``center`` (default: the first name) linked to every other agent."""
    names = _names(names)
    hub = names[0] if center is None else center
    if hub not in names:
        raise ConfigError(f"center {hub!r} is not one of the names: {', '.join(names)}")
    graph = nx.Graph()
    graph.add_nodes_from(names)
    graph.add_edges_from((hub, n) for n in names if n != hub)
    return graph


def tree(names: Sequence[str], branching: int = 2) -> nx.DiGraph:
    """A directed tree filled level by level: ``names[0]`` is the root, each node has ``branching`` children.

    The parent of ``names[i]`` is ``names[(i - 1) // branching]``; edges point from parent to child.
    """
    names = _names(names)
    if isinstance(branching, bool) or not isinstance(branching, int) or branching < 1:
        raise ConfigError(f"branching must be an integer >= 1, got {branching!r}")
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((names[(i - 1) // branching], names[i]) for i in range(1, len(names)))
    return graph


def complete(names: Sequence[str]) -> nx.Graph:
    """Every pair of agents linked (n (n - 1) / 2 undirected edges)."""
    names = _names(names)
    graph = nx.Graph()
    graph.add_nodes_from(names)
    graph.add_edges_from(itertools.combinations(names, 2))
    return graph


def random(names: Sequence[str], p: float, seed: int = 0) -> nx.Graph:
    """An Erdős–Rényi graph: each pair linked with probability ``p``, the same graph for the same seed."""
    names = _names(names)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"p must be a probability between 0 and 1, got {p!r}")
    rng = _random.Random(seed)  # a private generator: reproducible, and the global one is left alone
    graph = nx.Graph()
    graph.add_nodes_from(names)
    graph.add_edges_from(pair for pair in itertools.combinations(names, 2) if rng.random() < p)
    return graph


def layered(layers: Sequence[Sequence[str]]) -> nx.DiGraph:
    """Layers fully connected forward: every agent of layer i to every agent of layer i + 1."""
    if isinstance(layers, str) or not layers:
        raise ConfigError("layers must be a non-empty list of lists of agent names")
    groups = [_names(layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    _names([n for layer in groups for n in layer], "layers")  # a name in two layers is a mistake
    graph = nx.DiGraph()
    for i, layer in enumerate(groups):
        graph.add_nodes_from(layer, layer=i)
    for upper, lower in itertools.pairwise(groups):
        graph.add_edges_from(itertools.product(upper, lower))
    return graph


def to_hyperedges(graph: nx.Graph) -> list[list[str]]:
    """Each edge of ``graph`` as a 2-edge: direction dropped, duplicates merged, self-loops ignored.

    Both the pairs and the list follow the graph's node order (the order the
    names were given to the builders), so the result is the same on every run.
    Nodes without edges appear in no hyperedge.

    Raises:
        ConfigError: ``graph`` is not a networkx graph, or a node is not a string.
    """
    if not isinstance(graph, nx.Graph):
        raise ConfigError(f"expected a networkx graph, got {type(graph).__name__}")
    order = {node: i for i, node in enumerate(graph.nodes)}
    bad = [n for n in order if not isinstance(n, str)]
    if bad:
        raise ConfigError(f"graph nodes must be agent names (strings), got {bad[0]!r}")
    pairs = {tuple(sorted((u, v), key=order.__getitem__)) for u, v in graph.edges if u != v}
    return [list(pair) for pair in sorted(pairs, key=lambda pair: (order[pair[0]], order[pair[1]]))]
