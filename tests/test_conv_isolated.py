"""The hypergraph convolution with an isolated node and an empty hyperedge: finite, and they add nothing."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hyperteam.topologies.learned.layers import hypergraph_conv  # noqa: E402


def test_an_isolated_node_and_an_empty_hyperedge_give_finite_outputs_and_gradients():
    g = torch.Generator().manual_seed(0)
    # Nodes 0-2 share hyperedge 0, nodes 2-3 hyperedge 1; node 4 is in none, hyperedge 2 is empty.
    h = torch.tensor([[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float64)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    theta = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    out = hypergraph_conv(x, h, theta)
    assert torch.isfinite(out).all()
    assert torch.equal(out[4], torch.zeros(3, dtype=torch.float64))  # nothing reaches an isolated node
    connected = hypergraph_conv(x[:4], h[:4, :2], theta)  # the same graph without the isolated parts
    assert torch.allclose(out[:4], connected)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(theta.grad).all()
