"""Generated stand-ins for the math suites: GSM8K-shaped files the tests make, never the real data.

The records have the shapes and sizes of the published files (GSM8K's worked
solutions with calculator notes and ``#### N``, thousands separators, GSM-Hard's
float targets, MultiArith's plain numbers), and the questions are unique, so
the simulator can tell them apart.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SIZES = {"gsm8k/test": 1319, "gsm8k/train": 7473, "gsm-hard": 1319, "multiarith": 600}

_NAMES = ("Mia", "Omar", "Lena", "Ravi", "Zoe", "Kofi", "Ines", "Tomas", "Aiko", "Bruno", "Chen", "Dana")
_ITEMS = ("apple", "marble", "sticker", "pencil", "cookie", "shell", "stamp", "card", "bead", "coin")


def gsm8k_record(i: int, split: str) -> dict[str, str]:
    """One GSM8K-shaped record; record 0 of the test split has the gold answer 18."""
    if split == "test" and i == 0:
        a, b, c, name, item = 6, 3, 4, "Mia", "apple"
    else:
        rng = random.Random(f"{split}-{i}")
        a, b, c = rng.randint(2, 400), rng.randint(2, 30), rng.randint(2, 60)
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    question = (
        f"{name} has {a} {item}s. {name} buys {b} boxes with {c} {item}s in each box "
        f"(order {split}-{i}). How many {item}s does {name} have now?"
    )
    bought, total = b * c, a + b * c
    answer = (
        f"{name} buys {b} * {c} = <<{b}*{c}={bought}>>{bought} {item}s.\n"
        f"Now {name} has {a} + {bought} = <<{a}+{bought}={total}>>{total} {item}s.\n#### {total:,}"
    )
    return {"question": question, "answer": answer}


def write_suites(root: Path) -> Path:
    """Writes every suite's files in the layout of a ``HYPERTEAM_DATA_DIR`` under ``root``; returns ``root``."""
    for split in ("test", "train"):
        records = [gsm8k_record(i, split) for i in range(SIZES[f"gsm8k/{split}"])]
        _write(root / "gsm8k" / f"{split}.jsonl", records)
    hard = []
    for i in range(SIZES["gsm-hard"]):
        rng = random.Random(f"hard-{i}")
        a, b = rng.randint(10_000, 9_000_000), rng.randint(3, 90)
        hard.append(
            {
                "input": f"A factory makes {a} bolts a day (batch {i}). How many bolts does it make in {b} days?",
                "code": f"def solution():\n    return {a} * {b}\n",
                "target": float(a * b),
            }
        )
    _write(root / "gsm-hard" / "gsmhardv2.jsonl", hard)
    arith = []
    for i in range(SIZES["multiarith"]):
        rng = random.Random(f"arith-{i}")
        a, b, c = rng.randint(2, 40), rng.randint(2, 9), rng.randint(1, 20)
        arith.append(
            {"input": f"A class (room {i}) has {a} pupils and {b} teachers, and {c} visitors come. How many people?",
             "target": a + b + c}
        )  # fmt: skip
    _write(root / "multiarith" / "mawpsmultiarith.jsonl", arith)
    return root


def _write(path: Path, records: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
