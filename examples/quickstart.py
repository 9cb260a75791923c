"""A layered team answering GSM8K questions.

Uses the endpoint in HYPERTEAM_BASE_URL / HYPERTEAM_MODEL when set; otherwise
the SIMULATED model, and says so. GSM8K comes from HYPERTEAM_DATA_DIR when
set, else from hyperteam's cache, else from the Hugging Face hub (once); with
none of these (offline, nothing cached) it runs the bundled `demo` suite and
says why.

    python examples/quickstart.py [N]
"""

import asyncio
import os
import sys

import hyperteam as ht


def problems(n: int) -> list[ht.datasets.Problem]:
    try:
        return ht.datasets.load("gsm8k", split="test", limit=n)
    except ht.ConfigError as exc:
        if os.environ.get("HYPERTEAM_DATA_DIR"):
            raise  # the user pointed at their data: a problem there is theirs to see
        print(f"*** GSM8K is not available, so this runs the bundled demo suite instead. Why: {exc}\n")
        return ht.datasets.load("demo", limit=n)


async def main(n: int) -> None:
    model = None if os.environ.get("HYPERTEAM_BASE_URL") else "sim:0.8"
    if model:
        print("*** No endpoint configured (HYPERTEAM_BASE_URL): using the SIMULATED model sim:0.8. ***")
        print("*** Its answers are simulated, not real LLM output.                              ***\n")
    team = ht.load_team("ann-gsm8k")
    chosen = problems(n)
    results = await asyncio.gather(*(team.run(p.question, model=model) for p in chosen))
    correct = 0
    for p, r in zip(chosen, results, strict=True):
        correct += r.answer == p.answer
        mark = "ok " if r.answer == p.answer else "BAD"
        print(
            f"{mark} {p.id}: answer {r.answer}, gold {p.answer}, {r.usage.total_tokens} tokens, {r.usage.calls} calls"
        )
    tokens = sum(r.usage.total_tokens for r in results)
    print(f"\n{correct}/{len(chosen)} correct, {tokens} tokens{' (SIMULATED)' if model else ''}")


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
    except ht.HyperteamError as exc:
        sys.exit(f"quickstart: error: {exc}")
