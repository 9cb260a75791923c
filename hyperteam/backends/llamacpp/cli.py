"""``hyperteam serve-model MODEL --engine llama.cpp``: a GGUF model served on the CPU until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from hyperteam.errors import ConfigError


def main(args: argparse.Namespace, extra: list[str]) -> int:
    """Starts the server, prints the model spec, serves until Ctrl-C or SIGTERM.

    Raises:
        ConfigError: a bad option, or llama.cpp's server is not installed (one line, exit 2).
    """
    from hyperteam.backends.llamacpp.server import LlamaCppOptions, LlamaCppServer, ServerStartError

    if args.replicas != 1:
        raise ConfigError("--replicas: llama.cpp serves one replica per command; start several on other ports")
    options = LlamaCppOptions(
        served_model_name=args.served_model_name,
        n_ctx=args.n_ctx or 8192,
        n_threads=args.threads,
        api_key=args.api_key,
        host=args.host,
        startup_timeout_s=args.startup_timeout,
        extra_args=tuple(extra),
    )
    server = LlamaCppServer(args.model, options, port=args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
        print(f"starting llama.cpp for {server.gguf} on port {server.port} (log {server.log_file})", flush=True)
        server.wait_ready()
        print(f"ready: {server.spec}")
        print(f"  use it: hyperteam run --team self-consistency --model '{server.spec}' 'What is 17 * 3?'")
        print("  it serves one request at a time: hyperteam's client finds that out and queues the rest itself")
        if options.api_key:
            print("  (set HYPERTEAM_API_KEY to the --api-key for clients)")
        print("Ctrl-C stops the server.", flush=True)
        while server.running():
            time.sleep(0.5)
        code = server.proc.poll() if server.proc else "?"
        print(server.failure_report(f"exited with code {code}"), file=sys.stderr)
        return 1
    except ServerStartError as exc:
        print(f"hyperteam serve-model: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the llama.cpp server", file=sys.stderr)
        return 0
    finally:
        server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
