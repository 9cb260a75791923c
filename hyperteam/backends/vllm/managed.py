"""Managed vLLM servers: replicas of one model, shared within a process, behind the ``vllm:`` spec.

``vllm:ORG/MODEL?replicas=2&max_num_seqs=128`` starts the servers when the
spec is resolved (the first request waits until they answer) and stops them
when the last runtime using them closes. Two teams of one process that name
the same model and options share its servers.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from hyperteam.backends import _server
from hyperteam.backends.vllm.launcher import VLLMServer
from hyperteam.backends.vllm.options import VLLMOptions
from hyperteam.errors import ConfigError
from hyperteam.models.types import ChatModel

if TYPE_CHECKING:
    from hyperteam.models.runtime import Runtime

_SHARED: _server.Shared[ServerGroup] = _server.Shared()


class ServerGroup:
    """The replicas of one model: started together, ready together, stopped together.

    Args:
        model: a Hugging Face id or a local model folder.
        options: the flags and the replica count.
        port: the first replica's port (the others follow it); None: free ports.

    Example:
        >>> group = ServerGroup("Qwen/Qwen2.5-7B-Instruct", VLLMOptions(replicas=2, gpu_memory_utilization=0.45))
        >>> group.start().wait_ready()  # doctest: +SKIP
        >>> group.spec  # doctest: +SKIP
        'http://127.0.0.1:41001/v1,http://127.0.0.1:41002/v1#Qwen/Qwen2.5-7B-Instruct'
    """

    def __init__(self, model: str, options: VLLMOptions | None = None, *, port: int | None = None) -> None:
        self.model = model
        self.options = options or VLLMOptions()
        devices = self.options.device_sets()
        self.servers = [
            VLLMServer(model, self.options, port=None if port is None else port + i, devices=devices[i])
            for i in range(self.options.replicas)
        ]
        self._ready = False

    @property
    def served_name(self) -> str:
        return self.options.served_name(self.model)

    @property
    def spec(self) -> str:
        """A model spec that reaches every replica (comma-separated URLs spread the load)."""
        return ",".join(s.base_url for s in self.servers) + f"#{self.served_name}"

    def start(self) -> ServerGroup:
        for server in self.servers:
            server.start()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> ServerGroup:
        """Waits for every replica; on a failure stops them all and raises ``ServerStartError``."""
        try:
            for server in self.servers:
                server.start().wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._ready = True
        return self

    @property
    def ready(self) -> bool:
        return self._ready

    def running(self) -> bool:
        return all(server.running() for server in self.servers)

    def stop(self) -> None:
        self._ready = False
        for server in self.servers:
            server.stop()


def acquire(model: str, options: VLLMOptions) -> ServerGroup:
    """The running group for ``model`` with these options, started on first use.

    Without an ``api_key`` the servers get a random one: they serve this process only.
    """
    # A hex key: a urlsafe one may start with "-", which vllm's argument parser reads as a flag.
    locked = options if options.api_key else options.with_(api_key=secrets.token_hex(16))
    return _SHARED.acquire((model, options), lambda: ServerGroup(model, locked))


class ManagedModel(_server.ManagedModel[ServerGroup]):
    """A chat model whose vLLM servers hyperteam started; the first request waits until they answer.

    Example:
        >>> model = Runtime().model("vllm:Qwen/Qwen2.5-7B-Instruct?gpu_memory_utilization=0.5")  # doctest: +SKIP
    """

    @property
    def group(self) -> ServerGroup:
        return self.server


def managed_model(text: str, *, runtime: Runtime) -> ManagedModel:
    """Resolves the part after ``vllm:`` (``ORG/MODEL[?OPTIONS]``) against ``runtime``, which owns the servers."""
    from hyperteam.models.endpoint import EndpointModel
    from hyperteam.models.spread import SpreadModel

    model, _, query = text.partition("?")
    model = model.strip()
    if not model:
        raise ConfigError(f"vllm:{text}: name a model, e.g. vllm:Qwen/Qwen2.5-7B-Instruct")
    options = VLLMOptions.from_query(query)
    options.check_executable()
    group = acquire(model, options)
    key = group.options.api_key
    endpoints = [EndpointModel(runtime.endpoint(s.base_url, key), s.served_name) for s in group.servers]
    inner: ChatModel = endpoints[0] if len(endpoints) == 1 else SpreadModel(endpoints, name=group.spec)
    managed = ManagedModel(group, inner, shared=_SHARED, name=f"vllm:{text}")
    runtime.own(managed)
    return managed
