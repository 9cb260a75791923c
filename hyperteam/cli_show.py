"""``hyperteam show``: a team's topology as Mermaid or DOT text, and optionally a PNG.

The diagram text goes to stdout (pipe it to a file or to ``dot -Tsvg``); the
note about a written PNG goes to stderr so that it never mixes with the text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from hyperteam.errors import ConfigError, HyperteamError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``show``'s options to ``parser``."""
    parser.add_argument("--team", required=True, help="a team file (YAML/JSON) or built-in team name")
    parser.add_argument(
        "--format", choices=("mermaid", "dot"), default="mermaid", help="text format on stdout (default: mermaid)"
    )
    parser.add_argument("--png", metavar="FILE", help="also draw the team to FILE (needs matplotlib)")
    parser.add_argument(
        "--query", help="a learned-topology team: draw the hypergraph its generator makes for this query"
    )


def main(args: argparse.Namespace) -> int:
    """Prints the team's diagram; writes the PNG when ``--png`` is given.

    Raises:
        ConfigError: bad team spec, or no matplotlib for ``--png``.
    """
    from hyperteam.topologies.export import draw, to_dot, to_mermaid
    from hyperteam.topologies.io import load_team

    team = load_team(args.team)
    team = _for_query(team, getattr(args, "query", None))
    text = to_dot(team) if args.format == "dot" else to_mermaid(team)
    if args.png:
        draw(team, args.png)  # before printing, so a failure leaves no half-done output
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.png:
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


def _for_query(team: Any, query: str | None) -> Any:
    """The team to draw: a learned-topology team's hypergraph for ``query``; any other team as it is."""
    from hyperteam.topologies.learned.team import LearnedHypergraphTeam

    if not isinstance(team, LearnedHypergraphTeam):
        if query is not None:
            raise ConfigError("--query applies to learned-topology teams only (their hypergraph depends on it)")
        return team
    if not query or not query.strip():
        raise ConfigError(f"team {team.name!r} makes its hypergraph per query: add --query 'the question'")
    return team.team_for(team.topology_for(query))


def _standalone(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hyperteam show", description="Show a team's topology.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except HyperteamError as exc:
        print(f"hyperteam: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_standalone())
