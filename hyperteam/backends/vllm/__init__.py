"""Serving models with vLLM: ``vllm serve`` child processes, replicas, and the ``vllm:`` model spec.

``VLLMServer`` runs one server; ``ServerGroup`` runs the replicas of one
model; ``hyperteam serve-model`` and the ``vllm:ORG/MODEL`` spec are built
on them. vLLM itself is the ``vllm`` extra (``pip install 'hyperteam[vllm]'``)
and needs a GPU; ``hyperteam.testing.vllm_standin`` stands in for it in tests.

Example:
    >>> from hyperteam.backends.vllm import VLLMOptions, VLLMServer
    >>> with VLLMServer("Qwen/Qwen2.5-7B-Instruct", VLLMOptions(max_num_seqs=128)) as server:  # doctest: +SKIP
    ...     print(server.spec)
"""

from hyperteam.backends.vllm.launcher import ServerStartError, VLLMServer
from hyperteam.backends.vllm.managed import ManagedModel, ServerGroup
from hyperteam.backends.vllm.options import VLLMOptions

__all__ = ["ManagedModel", "ServerGroup", "ServerStartError", "VLLMOptions", "VLLMServer"]
