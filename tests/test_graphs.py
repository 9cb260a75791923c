"""Graph builders: shapes, seeds, errors, and conversion to hyperedges."""

from __future__ import annotations

import networkx as nx
import pytest

import hyperteam as ht
from hyperteam.topologies import graphs

NAMES = [f"s{i}" for i in range(7)]


def test_chain_is_a_directed_path_in_name_order():
    g = graphs.chain(NAMES[:5])
    assert isinstance(g, nx.DiGraph) and g.number_of_edges() == 4
    assert list(nx.topological_sort(g)) == NAMES[:5]
    assert graphs.chain(["solo"]).number_of_edges() == 0


def test_star_links_the_center_to_everyone_else():
    g = graphs.star(NAMES[:5])
    assert not g.is_directed() and g.number_of_edges() == 4 and g.degree("s0") == 4
    other = graphs.star(NAMES[:5], center="s3")
    assert other.degree("s3") == 4 and other.degree("s0") == 1
    with pytest.raises(ht.ConfigError, match="center 'boss' is not one of the names"):
        graphs.star(NAMES[:3], center="boss")


def test_tree_fills_levels_with_the_given_branching():
    g = graphs.tree(NAMES, branching=2)
    assert g.number_of_edges() == 6
    assert sorted(g.successors("s0")) == ["s1", "s2"] and sorted(g.successors("s2")) == ["s5", "s6"]
    ternary = graphs.tree(NAMES, branching=3)
    assert sorted(ternary.successors("s0")) == ["s1", "s2", "s3"] and list(ternary.predecessors("s6")) == ["s1"]
    with pytest.raises(ht.ConfigError, match="branching must be an integer >= 1"):
        graphs.tree(NAMES, branching=0)


def test_complete_links_every_pair():
    g = graphs.complete(NAMES[:5])
    assert g.number_of_edges() == 10 and all(d == 4 for _, d in g.degree())


def test_random_is_reproducible_from_its_seed():
    first = graphs.random(NAMES, 0.5, seed=3)
    assert sorted(first.edges) == sorted(graphs.random(NAMES, 0.5, seed=3).edges)
    seeds = {tuple(sorted(graphs.random(NAMES, 0.5, seed=s).edges)) for s in range(6)}
    assert len(seeds) > 1  # the seed matters
    assert graphs.random(NAMES, 0.0).number_of_edges() == 0
    assert graphs.random(NAMES, 1.0).number_of_edges() == 21
    assert set(first.nodes) == set(NAMES)  # isolated agents stay in the graph
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ht.ConfigError, match="p must be a probability between 0 and 1"):
            graphs.random(NAMES, bad)


def test_layered_links_each_layer_to_the_next():
    g = graphs.layered([["a", "b"], ["c", "d", "e"], ["f"]])
    assert g.number_of_edges() == 2 * 3 + 3 * 1
    assert sorted(g.successors("a")) == ["c", "d", "e"] and list(g.predecessors("f")) == ["c", "d", "e"]
    assert g.nodes["f"]["layer"] == 2
    with pytest.raises(ht.ConfigError, match=r"layers\[1\]: a graph needs at least one agent name"):
        graphs.layered([["a"], []])
    with pytest.raises(ht.ConfigError, match="layers: duplicate agent names: a"):
        graphs.layered([["a"], ["a"]])


@pytest.mark.parametrize("build", [graphs.chain, graphs.star, graphs.complete, graphs.tree])
def test_bad_names_are_refused(build):
    with pytest.raises(ht.ConfigError, match="at least one agent name"):
        build([])
    with pytest.raises(ht.ConfigError, match="duplicate agent names: a"):
        build(["a", "b", "a"])
    with pytest.raises(ht.ConfigError, match="not the string"):
        build("abc")


def test_to_hyperedges_drops_direction_merges_duplicates_and_keeps_node_order():
    g = nx.DiGraph()
    g.add_nodes_from(["s2", "s10", "s1"])
    g.add_edges_from([("s1", "s2"), ("s2", "s1"), ("s10", "s2"), ("s1", "s1")])
    assert graphs.to_hyperedges(g) == [["s2", "s10"], ["s2", "s1"]]
    assert graphs.to_hyperedges(graphs.chain(NAMES[:4])) == [["s0", "s1"], ["s1", "s2"], ["s2", "s3"]]
    assert len(graphs.to_hyperedges(graphs.complete(NAMES[:5]))) == 10
    assert graphs.to_hyperedges(graphs.layered([["a"], ["b", "c"]])) == [["a", "b"], ["a", "c"]]
    with pytest.raises(ht.ConfigError, match="agent names"):
        graphs.to_hyperedges(nx.path_graph(3))
    with pytest.raises(ht.ConfigError, match="expected a networkx graph"):
        graphs.to_hyperedges([("a", "b")])
