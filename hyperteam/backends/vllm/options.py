"""The ``vllm serve`` options that matter for agent traffic, and how they become flags.

Agent teams send many requests that share long prefixes (the system prompt and
the problem), so prefix caching is on and the batch size (``--max-num-seqs``) is
explicit. Anything else ``vllm serve`` accepts goes through ``extra_args``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from hyperteam.errors import ConfigError

VLLM_BIN_ENV = "HYPERTEAM_VLLM_BIN"


@dataclass(frozen=True, slots=True)
class VLLMOptions:
    """How to start ``vllm serve`` for one model.

    Attributes:
        served_model_name: the name clients send as ``model`` (default: the model path).
        max_num_seqs: sequences batched at once (vLLM's ``--max-num-seqs``).
        gpu_memory_utilization: this server's share of each GPU's memory (0 to 1];
            set it below 1 / servers when several share a GPU.
        max_model_len: the context length; smaller leaves more KV cache.
        tensor_parallel_size: GPUs per replica.
        api_key: the key the server demands (``--api-key``); None: none.
        prefix_caching: ``--enable-prefix-caching`` (on) or ``--no-enable-prefix-caching``.
        replicas: servers of this model, each on its own port.
        devices: GPU ids to spread the replicas over (``CUDA_VISIBLE_DEVICES``), e.g. ``"0,1"``.
        host: the address to bind.
        vllm_bin: the executable (a command line); default ``HYPERTEAM_VLLM_BIN`` or ``vllm``.
        startup_timeout_s: how long to wait for the first completion.
        extra_args: more ``vllm serve`` flags, passed through as they are.

    Example:
        >>> VLLMOptions(max_num_seqs=128).serve_args("Qwen/Qwen2.5-7B-Instruct", port=8001)[:3]
        ['Qwen/Qwen2.5-7B-Instruct', '--host', '127.0.0.1']
    """

    served_model_name: str | None = None
    max_num_seqs: int | None = 256
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    api_key: str | None = None
    prefix_caching: bool = True
    replicas: int = 1
    devices: str | None = None
    host: str = "127.0.0.1"
    vllm_bin: str | None = None
    startup_timeout_s: float = 900.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {self.replicas}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.startup_timeout_s <= 0:
            raise ConfigError(f"startup_timeout_s must be > 0, got {self.startup_timeout_s}")

    def command(self) -> list[str]:
        """The executable as an argument list: ``vllm_bin``, else ``$HYPERTEAM_VLLM_BIN``, else ``vllm``."""
        raw = self.vllm_bin or os.environ.get(VLLM_BIN_ENV) or "vllm"
        argv = shlex.split(raw)
        if not argv:
            raise ConfigError(f"empty vLLM executable (--vllm-bin or {VLLM_BIN_ENV})")
        return argv

    def check_executable(self) -> list[str]:
        """:meth:`command`, after checking that its program exists.

        Raises:
            ConfigError: the program is not found (vLLM not installed, or a wrong ``--vllm-bin``).
        """
        argv = self.command()
        if shutil.which(argv[0]) is None:
            raise ConfigError(
                f"the vLLM executable {argv[0]!r} was not found: pip install 'hyperteam[vllm]' (on a GPU machine), "
                f"point --vllm-bin or {VLLM_BIN_ENV} at it, or start one with `vllm serve` and use "
                "http://HOST:PORT/v1#NAME"
            )
        return argv

    def served_name(self, model: str) -> str:
        return self.served_model_name or model

    def serve_args(self, model: str, *, port: int) -> list[str]:
        """The arguments after ``vllm serve``: the model, then the flags."""
        args = [model, "--host", self.host, "--port", str(port), "--served-model-name", self.served_name(model)]
        args.append("--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching")
        if self.max_num_seqs is not None:
            args += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        if self.max_model_len is not None:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.tensor_parallel_size != 1:
            args += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.api_key:
            args += ["--api-key", self.api_key]
        return args + list(self.extra_args)

    def device_sets(self) -> list[str | None]:
        """``CUDA_VISIBLE_DEVICES`` per replica: disjoint slices of ``devices`` where there are enough."""
        if not self.devices:
            return [None] * self.replicas
        ids = [d.strip() for d in self.devices.split(",") if d.strip()]
        per = self.tensor_parallel_size
        if len(ids) >= per * self.replicas:
            return [",".join(ids[i * per : (i + 1) * per]) for i in range(self.replicas)]
        # Fewer GPUs than replicas: they share them (give each a gpu_memory_utilization share).
        return [",".join(ids)] * self.replicas

    @classmethod
    def from_query(cls, query: str, **base: Any) -> VLLMOptions:
        """Options from a spec's query string, e.g. ``replicas=2&max_num_seqs=128&extra=--dtype half``.

        Raises:
            ConfigError: an unknown option or a value of the wrong type.
        """
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = dict(base)
        for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            name = key.replace("-", "_")
            if name == "extra":
                values["extra_args"] = tuple(values.get("extra_args", ())) + tuple(shlex.split(raw))
                continue
            if name not in kinds or name == "extra_args":
                known = ", ".join(sorted([*kinds.keys() - {"extra_args"}, "extra"]))
                raise ConfigError(f"unknown vLLM option {key!r}; known: {known}")
            values[name] = _convert(name, str(kinds[name]), raw)
        return cls(**values)

    def with_(self, **changes: Any) -> VLLMOptions:
        return replace(self, **changes)


def _convert(name: str, kind: str, raw: str) -> Any:
    try:
        if kind.startswith("bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes", "on")
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"vLLM option {name}: bad value {raw!r} (expected {kind.split(' ')[0]})") from None
    return raw or None
