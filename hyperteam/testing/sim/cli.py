"""``hyperteam sim``: serve the simulated model over an OpenAI-compatible HTTP API.

Also runnable on its own: ``python -m hyperteam.testing.sim.cli --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from hyperteam.errors import ConfigError
from hyperteam.testing.sim.brain import SimBrain
from hyperteam.testing.sim.model import LatencyModel
from hyperteam.testing.sim.server import FAULT_KINDS, OPT_IN_FAULTS, SimServer

__all__ = ["add_arguments", "main", "parse_latency"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``hyperteam sim`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default 8000)")
    parser.add_argument(
        "--accuracy",
        type=float,
        default=0.7,
        help="probability of a correct answer; model names like sim-0.9 override it (default 0.7)",
    )
    parser.add_argument(
        "--latency-ms",
        default="150,3",
        metavar="TTFT[,PER_TOKEN]",
        help="time to first token and per completion token, in ms; "
        "PER_TOKEN defaults to 0 when left out, so 0 means no latency (default 150,3)",
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=256, help="requests in service at once; others queue (default 256)"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="probability that a request meets a fault (default 0)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds to draw from (default {','.join(FAULT_KINDS)}; "
        f"also {','.join(OPT_IN_FAULTS)}: a streamed answer that stops after its first piece and never ends)",
    )
    parser.add_argument(
        "--no-slot-report",
        dest="report_slots",
        action="store_false",
        help="say nothing about capacity on /props and /metrics (404), as llama-cpp-python's server; "
        "clients must then find the limit by probing",
    )
    parser.add_argument(
        "--world",
        default=None,
        help="a SIMULATED world where prompts and structure matter (e.g. skills); "
        "model names like sim-0.6?world=skills choose their own (default: the plain simulator)",
    )
    parser.add_argument(
        "--follow-majority",
        type=float,
        default=0.8,
        help="probability of repeating the majority of the answers found in the prompt (default 0.8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for answers and faults (default 0)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes (as vLLM's --api-key)")
    parser.add_argument("--request-log", metavar="FILE", help="append one JSON line per request to FILE")
    parser.add_argument(
        "--log-messages", action="store_true", help="with --request-log: include each request's messages"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the suites (default $HYPERTEAM_DATA_DIR)")


def parse_latency(text: str) -> LatencyModel:
    """Parses ``TTFT[,PER_TOKEN]`` (milliseconds) into a ``LatencyModel``.

    Raises:
        ConfigError: the text is not one or two non-negative numbers.

    Example:
        >>> parse_latency("150,3")
        LatencyModel(ttft_ms=150.0, per_token_ms=3.0)
    """
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 2 or len(values) != len(parts) or any(not v >= 0 for v in values):
        raise ConfigError(f"--latency-ms must be TTFT[,PER_TOKEN] in non-negative ms, got {text!r}")
    return LatencyModel(values[0], values[1] if len(values) == 2 else 0.0)


def _build(args: argparse.Namespace) -> tuple[SimBrain, SimServer]:
    for name in ("accuracy", "fault_rate", "follow_majority"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.max_concurrency < 1:
        raise ConfigError(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULT_KINDS + OPT_IN_FAULTS]
    if unknown:
        kinds = ",".join(FAULT_KINDS + OPT_IN_FAULTS)
        raise ConfigError(f"--faults: unknown kind {unknown[0]!r}; choose from {kinds}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ConfigError(f"--data-dir: no such folder: {args.data_dir}")
    brain = SimBrain(
        accuracy=args.accuracy,
        seed=args.seed,
        follow_majority=args.follow_majority,
        data_dir=args.data_dir,
        world=args.world,
    )
    server = SimServer(
        brain,
        latency=parse_latency(args.latency_ms),
        max_concurrency=args.max_concurrency,
        fault_rate=args.fault_rate,
        faults=faults,
        request_log=args.request_log,
        log_messages=args.log_messages,
        seed=args.seed,
        api_key=args.api_key,
        report_slots=args.report_slots,
    )
    return brain, server


async def _serve(args: argparse.Namespace) -> None:
    brain, server = _build(args)
    known = brain.known_count  # load the questions before the first request
    # The question table and the imports live as long as the server: keep
    # them out of the cyclic GC's scans, which otherwise stall busy periods.
    gc.collect()
    gc.freeze()
    await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(
            f"hyperteam sim: SIMULATED model serving on {server.url} "
            f"(accuracy {args.accuracy:g}, {known} known questions)",
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()
    logger.info("simulated model stopped after %d requests", server.requests)


def main(args: argparse.Namespace) -> int:
    """Runs the server until SIGTERM or SIGINT; returns the exit code.

    Raises:
        ConfigError: a bad option (the caller prints it and exits with 2).
    """
    asyncio.run(_serve(args))
    return 0


def _run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam sim", description="Serve the SIMULATED model (OpenAI API).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return main(args)
    except ConfigError as e:
        print(f"hyperteam sim: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_run())
