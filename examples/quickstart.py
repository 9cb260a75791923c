"""A layered team answering GSM8K questions.

Uses the endpoint in HYPERTEAM_BASE_URL / HYPERTEAM_MODEL when set; otherwise
the SIMULATED model, and says so. Reads GSM8K from HYPERTEAM_DATA_DIR.

    HYPERTEAM_DATA_DIR=../shared/data python examples/quickstart.py [N]
"""

import asyncio
import os
import sys

import hyperteam as ht


async def main(n: int) -> None:
    model = None if os.environ.get("HYPERTEAM_BASE_URL") else "sim:0.8"
    if model:
        print("*** No endpoint configured (HYPERTEAM_BASE_URL): using the SIMULATED model sim:0.8. ***")
        print("*** Its answers are simulated, not real LLM output.                              ***\n")
    team = ht.load_team("ann-gsm8k")
    problems = ht.datasets.load("gsm8k", split="test", limit=n)
    results = await asyncio.gather(*(team.run(p.question, model=model) for p in problems))
    correct = 0
    for p, r in zip(problems, results, strict=True):
        correct += r.answer == p.answer
        mark = "ok " if r.answer == p.answer else "BAD"
        print(
            f"{mark} {p.id}: answer {r.answer}, gold {p.answer}, {r.usage.total_tokens} tokens, {r.usage.calls} calls"
        )
    tokens = sum(r.usage.total_tokens for r in results)
    print(f"\n{correct}/{len(problems)} correct, {tokens} tokens{' (SIMULATED)' if model else ''}")


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
    except ht.HyperteamError as exc:
        sys.exit(f"quickstart: error: {exc}")
