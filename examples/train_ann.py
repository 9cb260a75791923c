"""Training a layered team by textual backprop, then growing a new team from its best layers.

Uses the endpoint in HYPERTEAM_BASE_URL / HYPERTEAM_MODEL when set; otherwise
the SIMULATED model, and says so. Reads GSM8K from HYPERTEAM_DATA_DIR.

    HYPERTEAM_DATA_DIR=../shared/data python examples/train_ann.py
"""

import asyncio
import os

import hyperteam as ht


async def main() -> None:
    model = None if os.environ.get("HYPERTEAM_BASE_URL") else "sim:0.7"
    if model:
        print("*** No endpoint configured: using the SIMULATED model sim:0.7; nothing below is real. ***\n")
    problems = ht.datasets.load("gsm8k", split="train", limit=48)
    team = ht.load_team("ann-gsm8k")
    cost = ht.optim.estimate(team, problems[0].question, train=24, val=24, batch=8, val_batch=8)
    print(cost.describe())
    trainer = ht.optim.Trainer(team, train=problems[:24], val=problems[24:], model=model, epochs=2, batch=8, log=print)
    report = await trainer.fit()
    print(f"validation {report['initial_val']:.3f} -> {report['final_val']:.3f}; tokens {report['tokens']['total']:,}")
    for name, param in team.named_parameters():
        print(f"{name} = {param.value!r}")
    if len(trainer.pool):
        grown = ht.optim.assemble(trainer.pool, list(trainer.pool.variants), name="grown")
        print("assembled from the pool:", [layer.name for layer in grown.layers])


if __name__ == "__main__":
    asyncio.run(main())
