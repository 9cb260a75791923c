"""``hyperteam serve``: serve teams over an OpenAI-compatible HTTP API (and the runs API).

Logs go to stderr as one JSON object per line (``--log-format text`` for
humans); request content is never logged at INFO, API keys never at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hyperteam.errors import ConfigError

DEFAULT_STORE = "hyperteam-runs.sqlite"

# The attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(
            {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "color_message" and k[0] != "_"}
        )
        if record.exc_info and record.levelno <= logging.DEBUG:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--team",
        action="append",
        required=True,
        metavar="SPEC",
        help="a team file (YAML/JSON) or built-in team name; repeat to serve several (each is a model)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="accepted API keys, one per line ('#' comments and blank lines ignored); without it the service is OPEN",
    )
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help=f"run store: a SQLite path, ':memory:' or a postgresql:// URL (default: {DEFAULT_STORE})",
    )
    parser.add_argument("--model", help="model spec for agents that name none (default: HYPERTEAM_BASE_URL, else sim)")
    parser.add_argument("--rate-limit", type=float, metavar="RPS", help="requests a second per API key (default: none)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    parser.add_argument(
        "--max-fanout", type=int, default=256, help="most model calls one request may cause (default: 256)"
    )
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=32 * 1024,
        metavar="N",
        help="largest request head (request line and headers); 431 beyond it (default: 32 KiB)",
    )
    parser.add_argument(
        "--max-headers", type=int, default=100, metavar="N", help="most headers per request; 431 beyond (default: 100)"
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a client has to send a whole request; 408 after (default: 30)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="on shutdown, seconds runs may go on before they are interrupted (default: 30)",
    )
    parser.add_argument("--log-format", choices=["json", "text"], default="json", help="log lines (default: json)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def read_api_keys(path: str | Path) -> list[str]:
    """The keys in ``path``: one per line, blank lines and ``#`` comments skipped.

    Raises:
        ConfigError: the file is missing or unreadable, or holds no key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read API key file {str(p)!r}: {exc.strerror or exc}") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ConfigError(f"API key file {str(p)!r} holds no key")
    if any(len(k.split()) > 1 for k in keys):
        raise ConfigError(f"API key file {str(p)!r}: a line holds more than one word; one key per line")
    return keys


def load_teams(specs: list[str]) -> dict[str, Any]:
    """Loads each team; the served name is the team's ``name``. Two teams of one name are an error."""
    from hyperteam.topologies import load_team

    teams: dict[str, Any] = {}
    for spec in specs:
        team = load_team(spec)
        if team.name in teams:
            raise ConfigError(f"two served teams are named {team.name!r} (from {spec!r}); rename one")
        team.compile()
        teams[team.name] = team
    return teams


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(args: argparse.Namespace, *, default_model: Callable[[str | None], str | None] | None = None) -> int:
    from pydantic import ValidationError

    from hyperteam.serve._http import HttpLimits
    from hyperteam.serve.limits import Limits

    keys = read_api_keys(args.api_key_file) if args.api_key_file else None
    teams = load_teams(args.team)
    model = default_model(args.model) if default_model is not None else args.model
    limits = Limits(max_body_bytes=args.max_body_bytes, max_fanout=args.max_fanout)
    try:
        http = HttpLimits(
            max_head_bytes=args.max_header_bytes, max_headers=args.max_headers, read_timeout_s=args.read_timeout
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    if args.rate_limit is not None and args.rate_limit <= 0:
        raise ConfigError(f"--rate-limit must be > 0, got {args.rate_limit}")
    configure_logging(args.log_format, args.log_level)
    if keys is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger(__name__).warning("serving on %s with no --api-key-file: anyone can use it", args.host)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_serve(args, teams, keys, model, limits, http))
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed (``uvicorn[standard]`` brings it), else asyncio's: the
    service's socket reads, writes and polls then run in C rather than in asyncio's Python."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(
    args: argparse.Namespace, teams: dict[str, Any], keys: list[str] | None, model: Any, limits: Any, http: Any
) -> None:
    import uvicorn

    from hyperteam.serve.app import create_app
    from hyperteam.serve.store import open_store

    store = open_store(args.store)
    await store.open()  # type: ignore[attr-defined]  # both stores have it; PostgreSQL connects here
    try:
        app = create_app(
            teams,
            store=store,
            api_keys=keys,
            model=model,
            limits=limits,
            rate_limit=args.rate_limit,
            shutdown_grace_s=args.grace,
        )
        # uvicorn waits up to this long for open requests (streams included); then the app's lifespan
        # gives background runs up to --grace more before interrupting them.
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, math.ceil(args.grace)),
            lifespan="on",
            **_http_options(http),
        )
        # A long-lived server: keep what start-up made (imports, teams) out of
        # the cyclic GC's full scans, which otherwise stall request handling; and
        # collect the young generation every 10,000 net allocations, not 700:
        # nearly everything a request makes dies by reference counting, and at
        # 370 requests/s the default ran ~30 collections a second, some of them
        # 20-40 ms pauses that were the service's p99 (bench service: overhead
        # p99 11.9 ms -> 6.7 ms, GC time 1.5 s -> 0.2 s over a 20 s run).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 100)
        with _quiet_signal_replay():
            await uvicorn.Server(config).serve()
    finally:
        await store.close()


def _http_options(http: Any) -> dict[str, Any]:
    """uvicorn's protocol with the header, count and read-time limits (see ``hyperteam.serve._http``);
    without httptools, uvicorn's h11 protocol, which limits only the head's size."""
    from hyperteam.serve._http import protocol_class

    try:
        return {"http": protocol_class(http)}
    except ImportError:
        logging.getLogger(__name__).warning(
            "httptools not installed: no request read timeout (pip install uvicorn[standard])"
        )
        return {"http": "h11", "h11_max_incomplete_event_size": http.max_head_bytes}


@contextlib.contextmanager
def _quiet_signal_replay() -> Iterator[None]:
    """After a graceful shutdown uvicorn raises the signal that asked for it again, which would end
    the process before the store is closed; handlers of ours absorb that replay (exit code 0)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
