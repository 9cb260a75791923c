"""The ``hyperteam`` command.

Each verb lives in its own function; heavy imports happen inside them so
that ``hyperteam --help`` stays fast. Bad input ends with a one-line error
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence

from hyperteam.errors import HyperteamError

DEFAULT_SIM = "sim:0.8"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _default_model(model: str | None) -> str | None:
    """The model to use: the flag, else the environment, else the simulator, said loudly."""
    if model or os.environ.get("HYPERTEAM_BASE_URL"):
        return model
    print(
        f"hyperteam: no model configured (--model or HYPERTEAM_BASE_URL): using the SIMULATED model "
        f"{DEFAULT_SIM}; its answers are simulated, not real LLM output",
        file=sys.stderr,
    )
    return DEFAULT_SIM


def cmd_run(args: argparse.Namespace) -> int:
    from hyperteam.models import Runtime
    from hyperteam.topologies import load_team

    team = load_team(args.team)
    model = _default_model(args.model)
    team.compile()  # one-time work, kept out of the reported wall time

    async def go():  # type: ignore[no-untyped-def]
        async with Runtime() as runtime:
            return await team.run(args.question, runtime=runtime, model=model)

    result = asyncio.run(go())
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    if args.trace:
        for ev in result.trace:
            print(f"[{ev.layer}] {ev.agent} ({ev.kind}): {ev.answer}  {ev.usage.total_tokens} tokens")
    u = result.usage
    simulated = " (SIMULATED)" if _is_simulated(model, team) else ""
    print(f"answer: {result.answer}{simulated}")
    print(f"tokens: {u.total_tokens} (prompt {u.prompt_tokens}, completion {u.completion_tokens})")
    print(f"calls: {u.calls}")
    print(f"wall: {result.wall_s:.2f} s")
    return 0


def _is_simulated(model: object, team: object) -> bool:
    from hyperteam.models.spec import is_simulated

    return is_simulated(model, getattr(team, "model", None), *(a.model for a in getattr(team, "agents", [])))


def cmd_sim(args: argparse.Namespace) -> int:

    from hyperteam.testing.sim import cli as sim_cli

    return sim_cli.main(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from hyperteam.evals import cli as eval_cli

    return eval_cli.main(args, default_model=_default_model)


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from hyperteam.evals import compare

    return compare.main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from hyperteam.serve import cli as serve_cli

    return serve_cli.main(args, default_model=_default_model)


def cmd_serve_model(args: argparse.Namespace) -> int:
    from hyperteam.backends.vllm import cli as vllm_cli

    return vllm_cli.main(args)


def cmd_train(args: argparse.Namespace) -> int:
    from hyperteam import cli_train

    return cli_train.main(args, default_model=_default_model)


def cmd_show(args: argparse.Namespace) -> int:
    from hyperteam import cli_show

    return cli_show.main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from hyperteam.bench import run_benchmark

    return run_benchmark(args.name, args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hyperteam", description="Layered and hypergraph agent teams for LLMs.")
    sub = parser.add_subparsers(
        dest="verb", required=True, parser_class=_Parser, metavar="{run,eval,train,serve,serve-model,sim,show,bench}"
    )

    run = sub.add_parser("run", help="run a team on one question", description="Run a team on one question.")
    run.add_argument("question", help="the question or task")
    run.add_argument("--team", required=True, help="a team file (YAML/JSON) or built-in team name")
    run.add_argument("--model", help="model spec for agents that name none (default: HYPERTEAM_BASE_URL, else sim)")
    run.add_argument("--json", action="store_true", help="print the full result, trace included, as JSON")
    run.add_argument("--trace", action="store_true", help="print one line per step before the answer")
    run.set_defaults(func=cmd_run)

    from hyperteam.evals import cli as eval_cli

    ev = sub.add_parser(
        "eval",
        help="evaluate a team on a suite (also: eval compare DIR ...)",
        description="Evaluate a team on a suite into a run folder. `hyperteam eval compare DIR ...` compares runs.",
    )
    eval_cli.add_arguments(ev)
    ev.set_defaults(func=cmd_eval)

    from hyperteam.evals import compare

    # Reached as `hyperteam eval compare ...` (see main); no help= keeps it out of the verb list.
    cmp = sub.add_parser("eval-compare", description="Compare eval runs side by side.")
    compare.add_arguments(cmp)
    cmp.set_defaults(func=cmd_eval_compare)
    cmp.prog = "hyperteam eval compare"

    from hyperteam.serve import cli as serve_cli

    serve = sub.add_parser(
        "serve",
        help="serve teams as OpenAI-compatible models (and a runs API)",
        description="Serve teams over HTTP: an OpenAI-compatible API (each team is a model) and a runs API.",
    )
    serve_cli.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    from hyperteam.backends.vllm import cli as vllm_cli

    serve_model = sub.add_parser(
        "serve-model",
        help="serve a model with vLLM (GPU) or llama.cpp (CPU, --engine llama.cpp) until Ctrl-C",
        description="Serve a model with vLLM: prefix caching on, replicas on their own ports. "
        "Flags not listed here go to `vllm serve`. With --engine llama.cpp, serve a GGUF model on the CPU.",
    )
    vllm_cli.add_arguments(serve_model)
    serve_model.set_defaults(func=cmd_serve_model)

    from hyperteam import cli_train

    train = sub.add_parser(
        "train",
        help="train a team (textual backprop) or a topology (--topology)",
        description="Train a team's prompts, roles and aggregators on a suite, or learn a topology (--topology).",
    )
    cli_train.add_arguments(train)
    train.set_defaults(func=cmd_train)

    from hyperteam.testing.sim import cli as sim_cli

    sim = sub.add_parser(
        "sim", help="serve the simulated model over HTTP", description="Serve the SIMULATED model (OpenAI API)."
    )
    sim_cli.add_arguments(sim)
    sim.set_defaults(func=cmd_sim)

    from hyperteam import cli_show

    show = sub.add_parser(
        "show",
        help="print a team's topology (Mermaid/DOT), optionally a PNG",
        description="Print a team's topology as Mermaid (default) or DOT; --png draws it.",
    )
    cli_show.add_arguments(show)
    show.set_defaults(func=cmd_show)

    bench = sub.add_parser("bench", help="run a benchmark", description="Run a benchmark (see bench/README.md).")
    bench.add_argument("name", help="benchmark name: orchestration, eval, prefix, service, vllm, learn")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="the benchmark's own options (--help)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["eval", "compare"]:
        argv = ["eval-compare", *argv[2:]]  # a verb of its own, spelled as eval's sub-verb
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from hyperteam.backends import hold_servers

        # A server a spec starts (vllm:, llamacpp:) serves the whole command, not one of its runtimes.
        with hold_servers():
            return func(args)
    except HyperteamError as exc:
        print(f"hyperteam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hyperteam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
