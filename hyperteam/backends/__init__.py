"""Model servers that hyperteam starts and stops: vLLM on GPUs (:mod:`.vllm`), llama.cpp on CPUs (:mod:`.llamacpp`).

Each backend owns a model-spec prefix (``vllm:ORG/MODEL``), registered here
with :func:`hyperteam.models.spec.register_scheme` when hyperteam is
imported; the backend's own code is imported only when such a spec is
resolved, so ``import hyperteam`` starts nothing and imports no server code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hyperteam.models.spec import register_scheme

if TYPE_CHECKING:
    from hyperteam.models.runtime import Runtime
    from hyperteam.models.types import ChatModel


def _vllm(rest: str, runtime: Runtime) -> ChatModel:
    from hyperteam.backends.vllm.managed import managed_model

    return managed_model(rest, runtime=runtime)


register_scheme("vllm", _vllm)


def _llamacpp(rest: str, runtime: Runtime) -> ChatModel:
    from hyperteam.backends.llamacpp.managed import managed_model

    return managed_model(rest, runtime=runtime)


register_scheme("llamacpp", _llamacpp)


@contextmanager
def hold_servers() -> Iterator[None]:
    """Keeps the servers that specs start (``vllm:``, ``llamacpp:``) running until the block ends, though
    runtimes using them close and open in turn (see :func:`hyperteam.backends._server.hold_servers`).
    ``hyperteam`` commands run inside one."""
    from hyperteam.backends._server import hold_servers as hold

    with hold():
        yield
