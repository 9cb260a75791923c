"""A stand-in for the ``vllm`` executable, for tests and demos without a GPU: it serves the SIMULATED model.

It accepts ``vllm serve MODEL [flags]`` (the flags the launcher sends, and
ignores the rest), and serves ``hyperteam sim`` on the given host and port,
with ``/metrics`` in vLLM's names: ``vllm:prefix_cache_queries_total`` and
``vllm:prefix_cache_hits_total`` (in tokens, from a block hash of each
prompt, as vLLM's automatic prefix caching counts them) and
``vllm:generation_tokens_total``. Point the launcher at it with
``HYPERTEAM_VLLM_BIN="python -m hyperteam.testing.vllm_standin"``.

Environment knobs for tests:

- ``HYPERTEAM_STANDIN_LOAD_S``: seconds during which ``/health`` says ok but
  completions answer 503, as vLLM does while it loads a model.
- ``HYPERTEAM_STANDIN_FAIL``: print this text as an error and exit with code 1
  instead of serving (a server that dies at start).
- ``HYPERTEAM_STANDIN_ARGV_LOG``: append ``{"pid", "argv"}`` as a JSON line to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence

import orjson

from hyperteam.models.tokenizer import count_tokens
from hyperteam.testing.sim._http import Connection, error_body, response
from hyperteam.testing.sim.brain import SimBrain
from hyperteam.testing.sim.server import SimServer

_BLOCK_CHARS = 64  # about 16 tokens, vLLM's default block size


class StandInServer(SimServer):
    """``SimServer`` with vLLM's loading phase and ``/metrics``."""

    def __init__(self, brain: SimBrain, *, served_name: str, load_s: float, **kwargs: object) -> None:
        super().__init__(brain, **kwargs)  # type: ignore[arg-type]
        self.served_name = served_name
        self.ready_at = time.monotonic() + load_s
        self.cached_blocks: set[bytes] = set()
        self.queries = 0
        self.hits = 0
        self.generated = 0

    def handle(self, conn: Connection, method: bytes, path: bytes, body: bytes) -> None:
        if self.refused(conn, path):
            return
        if path == b"/metrics" and method == b"GET":
            conn.write(response(200, self.metrics().encode(), keep_alive=conn.keep_alive))
            conn.finish()
            return
        if path == b"/v1/models" and method == b"GET":  # vLLM lists the served model name
            model = {"id": self.served_name, "object": "model", "owned_by": "vllm", "simulated": True}
            conn.write(response(200, orjson.dumps({"object": "list", "data": [model]}), keep_alive=conn.keep_alive))
            conn.finish()
            return
        if path == b"/v1/chat/completions" and method == b"POST":
            if time.monotonic() < self.ready_at:
                body = error_body("model is loading", type_="server_error", code="loading")
                conn.write(response(503, body, keep_alive=conn.keep_alive))
                conn.finish()
                return
            self._count_prefix(body)
        super().handle(conn, method, path, body)

    def end_request(self, req, status):  # type: ignore[no-untyped-def]
        if status == 200 and req.state != "done":
            self.generated += req.completion_tokens
        super().end_request(req, status)

    def _count_prefix(self, body: bytes) -> None:
        try:
            messages = orjson.loads(body).get("messages") or []
        except (orjson.JSONDecodeError, AttributeError):
            return
        text = "\x00".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        blocks = len(text) // _BLOCK_CHARS
        hit = True
        for i in range(blocks):
            block = text[: (i + 1) * _BLOCK_CHARS].encode()
            tokens = count_tokens(text[i * _BLOCK_CHARS : (i + 1) * _BLOCK_CHARS])
            self.queries += tokens
            if hit and block in self.cached_blocks:
                self.hits += tokens
            else:
                hit = False
                self.cached_blocks.add(block)
        self.queries += count_tokens(text[blocks * _BLOCK_CHARS :])

    def metrics(self) -> str:
        label = f'{{model_name="{self.served_name}",engine="0"}}'
        lines = [
            "# SIMULATED: hyperteam's vLLM stand-in",
            "# TYPE vllm:prefix_cache_queries_total counter",
            f"vllm:prefix_cache_queries_total{label} {float(self.queries)}",
            "# TYPE vllm:prefix_cache_hits_total counter",
            f"vllm:prefix_cache_hits_total{label} {float(self.hits)}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {float(self.generated)}",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {float(self.in_flight)}",
        ]
        return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm (hyperteam stand-in)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name")
    serve.add_argument("--api-key")
    serve.add_argument("--max-num-seqs", type=int, default=256)
    serve.add_argument("--latency-ms", default="0", help="stand-in only: the sim's TTFT[,PER_TOKEN] in ms")
    serve.add_argument("--accuracy", type=float, default=0.7, help="stand-in only: the sim's accuracy")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from hyperteam.testing.sim.cli import parse_latency

    server = StandInServer(
        SimBrain(accuracy=args.accuracy),
        served_name=args.served_model_name or args.model,
        load_s=float(os.environ.get("HYPERTEAM_STANDIN_LOAD_S") or 0),
        latency=parse_latency(args.latency_ms),
        max_concurrency=args.max_num_seqs,
        api_key=args.api_key,
    )
    await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"INFO stand-in vLLM (SIMULATED model) for {args.model} serving on {server.url}", flush=True)
    await stop.wait()
    await server.close()
    print("INFO stand-in vLLM stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_path = os.environ.get("HYPERTEAM_STANDIN_ARGV_LOG")
    if log_path:
        with open(log_path, "ab") as fh:
            fh.write(orjson.dumps({"pid": os.getpid(), "argv": argv}) + b"\n")
    args, _unknown = _parser().parse_known_args(argv)
    print(f"INFO stand-in vLLM: loading {args.model}", flush=True)
    failure = os.environ.get("HYPERTEAM_STANDIN_FAIL")
    if failure:
        print(f"ERROR {failure}", flush=True)
        return 1
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
