"""One ``vllm serve`` child process: start it, wait until it answers, stop it.

The process, readiness (a real completion, not only ``/health``) and stopping
are shared with every backend (:mod:`hyperteam.backends._server`); here is
what is vLLM's own: its command line and the GPUs it sees.
"""

from __future__ import annotations

import os

from hyperteam.backends._server import ServerProcess, ServerStartError
from hyperteam.backends.vllm.options import VLLMOptions

__all__ = ["ServerStartError", "VLLMServer"]


class VLLMServer(ServerProcess):
    """A ``vllm serve`` child process for one model.

    Args:
        model: a Hugging Face id or a local model folder.
        options: the flags; see :class:`VLLMOptions`.
        port: the port; None picks a free one.
        devices: ``CUDA_VISIBLE_DEVICES`` for this server (None: inherited).
        log_file: where the server's output goes (default: a file under the temp folder).

    Example:
        >>> with VLLMServer("Qwen/Qwen2.5-7B-Instruct", VLLMOptions(max_num_seqs=128)) as server:  # doctest: +SKIP
        ...     print(server.spec)  # http://127.0.0.1:PORT/v1#Qwen/Qwen2.5-7B-Instruct
    """

    engine = "vLLM"

    def __init__(
        self,
        model: str,
        options: VLLMOptions | None = None,
        *,
        port: int | None = None,
        devices: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(options or VLLMOptions(), port=port, log_file=log_file)
        self.model = model
        self.devices = devices

    @property
    def served_name(self) -> str:
        return self.options.served_name(self.model)

    @property
    def label(self) -> str:
        return self.model

    def argv(self) -> list[str]:
        return [*self.options.command(), "serve", *self.options.serve_args(self.model, port=self.port)]

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.devices
        return env

    def spawn_error(self, exc: OSError) -> str:
        return (
            f"cannot start vLLM ({self.argv()[0]}): {exc}; install it with pip install 'hyperteam[vllm]' "
            f"or point --vllm-bin / HYPERTEAM_VLLM_BIN at it"
        )
