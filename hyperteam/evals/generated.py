"""Generated GSM8K-style word problems with known answers: the ``generated`` suite.

Seven templates (items bought by the box, a percentage given away, a
difference, totals over days, a rate per 15 minutes, halves and thirds,
change from a bill), with random names, items and numbers. The ``generated``
suite (``load("generated", split="train")``, 2000 problems; ``"test"``, 1000,
none of them a train question) needs no data on disk, so training and held-out
evaluation run in a bare clone; benchmarks that need hundreds of held-out
problems without GSM8K draw them here too. Each problem's category (money,
time, fraction or count, as the simulator's ``topology`` world reads it)
follows from its template, so unlike GSM8K's the categories are cleanly
readable from the wording. Each template states its
quantities in the words the skills world reads as pitfalls (``each``,
``percent``, ``left``, ``in total``, hours, ``half``, dollars), so the
generated problems carry the same kinds of latent pitfalls as GSM8K's. The
answers are computed, so they are right by construction. Give the problems
to a :class:`~hyperteam.testing.sim.SimBrain` (``problems=``) so that the
simulated model knows them.

Example:
    >>> ps = generate(3, seed=1, prefix="t")
    >>> [p.id for p in ps], all(p.answer.lstrip("-").isdigit() for p in ps)
    (['t-0000', 't-0001', 't-0002'], True)
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from hyperteam.evals.datasets import Problem

__all__ = ["SPLITS", "generate", "split"]

SPLITS = {"train": 2000, "test": 1000}
_SEED = 20261129

_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonah", "Kira", "Liam")
_ITEMS = ("apples", "pencils", "stickers", "cookies", "marbles", "books", "shells", "cards")


def _per_unit(r: random.Random, who: str, item: str) -> tuple[str, int]:
    boxes, each, extra = r.randint(3, 12), r.randint(4, 15), r.randint(2, 20)
    q = f"{who} buys {boxes} boxes of {item}. Each box holds {each} {item}. {who} already had {extra} {item}. "
    return q + f"How many {item} does {who} have now?", boxes * each + extra


def _percent(r: random.Random, who: str, item: str) -> tuple[str, int]:
    total, pct = r.randint(2, 20) * 20, r.choice((10, 20, 25, 50, 75))
    q = f"{who} has {total} {item} and gives away {pct}% of them to a friend. "
    return q + f"How many {item} does {who} keep?", total - total * pct // 100


def _difference(r: random.Random, who: str, item: str) -> tuple[str, int]:
    a, b = r.randint(20, 90), r.randint(5, 19)
    q = f"{who} collected {a} {item} and another child collected {b} fewer {item} than {who}. "
    return q + f"How many more {item} did {who} collect than the other child?", b


def _totals(r: random.Random, who: str, item: str) -> tuple[str, int]:
    days = [r.randint(3, 30) for _ in range(3)]
    q = f"{who} sorted {days[0]} {item} on Monday, {days[1]} on Tuesday and {days[2]} on Wednesday. "
    return q + f"How many {item} did {who} sort altogether?", sum(days)


def _time(r: random.Random, who: str, item: str) -> tuple[str, int]:
    hours, rate = r.randint(2, 6), r.randint(2, 9)
    q = f"{who} packs {rate} {item} every 15 minutes. "
    return q + f"How many {item} does {who} pack in {hours} hours?", rate * 4 * hours


def _fraction(r: random.Random, who: str, item: str) -> tuple[str, int]:
    total = r.randint(3, 30) * 6
    q = f"{who} had {total} {item}. {who} gave half of them to a sister and a third of the rest to a cousin. "
    return q + f"How many {item} are left?", total // 2 - total // 6


def _money(r: random.Random, who: str, item: str) -> tuple[str, int]:
    n, price, paid = r.randint(2, 9), r.randint(2, 12), 100
    q = f"{who} buys {n} {item} at ${price} apiece and pays with a ${paid} bill. "
    return q + f"How many dollars of change does {who} get?", paid - n * price


_TEMPLATES: tuple[Callable[[random.Random, str, str], tuple[str, int]], ...] = (
    _per_unit,
    _percent,
    _difference,
    _totals,
    _time,
    _fraction,
    _money,
)


def generate(n: int, *, seed: int = 0, prefix: str = "gen") -> list[Problem]:
    """``n`` distinct generated problems (ids ``PREFIX-0000``...); the same seed gives the same problems."""
    r = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < n:
        template = _TEMPLATES[len(out) % len(_TEMPLATES)]
        question, answer = template(r, r.choice(_NAMES), r.choice(_ITEMS))
        if question in seen:
            continue
        seen.add(question)
        out.append(Problem(id=f"{prefix}-{len(out):04d}", question=question, answer=str(answer)))
    return out


def split(name: str) -> list[Problem]:
    """The ``generated`` suite's ``train`` or ``test`` split: one draw of 3000 distinct problems, cut in two."""
    problems = _draw()
    first = problems[: SPLITS["train"]] if name == "train" else problems[SPLITS["train"] :]
    return [Problem(id=f"generated-{name}-{i:04d}", question=p.question, answer=p.answer) for i, p in enumerate(first)]


@functools.cache
def _draw() -> tuple[Problem, ...]:
    return tuple(generate(sum(SPLITS.values()), seed=_SEED, prefix="generated"))
