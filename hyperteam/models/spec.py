"""The one resolver from model specs to chat models."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hyperteam.errors import ConfigError
from hyperteam.models.types import ChatModel

if TYPE_CHECKING:
    from hyperteam.models.runtime import Runtime

SPEC_FORMS = "openai:MODEL, http://HOST:PORT/v1#NAME, vllm:ORG/MODEL, sim:ACCURACY"
_URL = re.compile(r"^https?://[^\s#]+(#.+)?$")
_SCHEME = re.compile(r"(?:^|(?<=,))\s*https?://", re.IGNORECASE)

ServerFactory = Callable[[str, "Runtime"], ChatModel]
_SERVER_SCHEMES: dict[str, ServerFactory] = {}


def register_scheme(prefix: str, factory: ServerFactory) -> None:
    """Lets a model-server backend own a spec prefix (``vllm:``): ``factory(rest, runtime)`` makes the model.

    Backends (:mod:`hyperteam.backends`) register themselves when hyperteam is
    imported, so the client never imports the code that starts servers.
    """
    _SERVER_SCHEMES[prefix] = factory


def resolve(spec: str | ChatModel | None, *, runtime: Runtime | None = None) -> ChatModel:
    """Turns a model spec into a chat model.

    ========================  ==================================================
    ``openai:gpt-4o-mini``    OpenAI, key from ``OPENAI_API_KEY``
    ``http://h:8000/v1#NAME``  any OpenAI-compatible endpoint, served model NAME
    ``vllm:ORG/MODEL``        a managed vLLM server (the ``vllm`` extra, a GPU)
    ``sim:0.7``               the simulated model, correct with probability 0.7
    ``sim:0.6?world=skills``  the simulated model in a SIMULATED world where prompts matter
    None or ``""``            ``HYPERTEAM_BASE_URL`` + ``HYPERTEAM_MODEL``
    ========================  ==================================================

    Several URLs before ``#NAME`` (``http://a:8000/v1,http://b:8000/v1#NAME``) are
    replicas of one model; requests are spread over them (:class:`SpreadModel`).
    ``vllm:`` takes options as a query: ``vllm:ORG/MODEL?replicas=2&max_num_seqs=128``
    (see :class:`hyperteam.backends.vllm.VLLMOptions`; backends register their prefixes
    with :func:`register_scheme`). Objects that already are
    chat models (test doubles) pass through.

    Raises:
        ConfigError: the spec is malformed, unknown or lacks its credentials.
    """
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, ChatModel):
            return spec
        raise ConfigError(f"model must be a spec string or a chat model, got {type(spec).__name__}")
    if runtime is None:
        from hyperteam.models.runtime import Runtime

        runtime = Runtime.current()
    spec = (spec or "").strip()
    if not spec:
        base = os.environ.get("HYPERTEAM_BASE_URL")
        if not base:
            raise ConfigError("no model given: pass a model spec (" + SPEC_FORMS + ") or set HYPERTEAM_BASE_URL")
        name = os.environ.get("HYPERTEAM_MODEL")
        if not name:
            raise ConfigError("HYPERTEAM_BASE_URL is set but HYPERTEAM_MODEL (the served model name) is not")
        spec = f"{base}#{name}"
    # URL schemes are case-insensitive (RFC 3986): HTTP://h:8000/v1 is http://h:8000/v1.
    spec = _SCHEME.sub(lambda m: m.group(0).lower(), spec)
    if spec.startswith(("http://", "https://")):
        if not _URL.match(spec):
            raise ConfigError(f"malformed endpoint spec {spec!r}: expected http://HOST:PORT/v1#NAME")
        base, _, name = spec.partition("#")
        name = name or os.environ.get("HYPERTEAM_MODEL", "")
        if not name:
            raise ConfigError(f"endpoint spec {spec!r} names no model: add #NAME (the served model name)")
        from hyperteam.models.endpoint import EndpointModel

        key = os.environ.get("HYPERTEAM_API_KEY")
        bases = [b.strip() for b in base.split(",")]
        if len(bases) > 1:  # replicas of one model: http://h1:8000/v1,http://h2:8000/v1#NAME
            bad = [b for b in bases if not _URL.match(b)]
            if bad:
                raise ConfigError(f"malformed replica URL {bad[0]!r} in {spec!r}: expected http://HOST:PORT/v1")
            from hyperteam.models.spread import SpreadModel

            return SpreadModel([EndpointModel(runtime.endpoint(b, key), name) for b in bases], name=spec)
        return EndpointModel(runtime.endpoint(base, key), name)
    prefix, sep, rest = spec.partition(":")
    if prefix == "openai" and sep and rest:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(f"model {spec!r} needs OPENAI_API_KEY in the environment")
        from hyperteam.models.endpoint import EndpointModel

        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return EndpointModel(runtime.endpoint(base, key), rest, structured="openai")
    if prefix == "sim":
        from hyperteam.testing.sim.model import SimModel

        accuracy = 0.7
        rest, qsep, query = rest.partition("?")
        world = None
        if qsep:
            key, eq, world = query.partition("=")
            if key != "world" or not eq or not world:
                raise ConfigError(
                    f"bad simulated model spec {spec!r}: the only option is ?world=NAME, e.g. sim:0.6?world=skills"
                )
        if sep and (rest or not qsep):
            try:
                accuracy = float(rest)
            except ValueError:
                raise ConfigError(f"bad simulated model spec {spec!r}: expected sim:ACCURACY, e.g. sim:0.7") from None
        if not 0.0 <= accuracy <= 1.0:
            raise ConfigError(f"bad simulated model spec {spec!r}: accuracy must be within [0, 1]")
        return SimModel(accuracy, name=spec, world=world)
    if prefix in _SERVER_SCHEMES and sep and rest:
        return _SERVER_SCHEMES[prefix](rest, runtime)
    if spec in ("scripted", "function"):
        raise ConfigError(
            f"{spec!r} is a test double: pass hyperteam.testing.{spec.capitalize()}Model(...) as the model object"
        )
    raise ConfigError(f"unknown model spec {spec!r}: expected one of {SPEC_FORMS}")


def is_simulated(*specs: object) -> bool:
    """Whether any of ``specs`` names the simulated model: in process (``sim:0.7``) or a
    ``hyperteam sim`` server (``http://HOST:PORT/v1#sim-0.7``). Reports made with it say so."""
    return any(isinstance(s, str) and (s.startswith("sim") or "#sim" in s) for s in specs)
