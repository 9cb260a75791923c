"""The SIMULATED ``topology`` world: who an agent talks to decides whether it is right.

Rules (pure functions of the texts, so the best topology is computable):

* A problem belongs to one of four categories (:data:`CATEGORIES`), read
  from its wording: the category whose keywords it uses most (money:
  ``$``, ``dollars``, ``price``...; time: ``hours``, ``days``, ``miles``...;
  fraction: ``%``, ``half``, ``twice``...); a problem with none of them is a
  ``count`` problem. Ties go to the earlier category.
* Each category has an *expert*: an agent whose name (or, for the agent
  itself, role and instructions) contains the category's cue (``accountant``
  / ``money``, ``estimator`` / ``time``, ``algebraist`` / ``fraction``,
  ``skeptic`` / ``count``). The built-in five math agents are one expert per
  category, plus ``tutor``, expert in nothing.
* An agent's chance of a right answer is the model's accuracy ``ACC``, plus
  :data:`SELF` if it is the category's expert, plus :data:`PEER` if its
  prompt holds a hyperedge (``Hyperedge e0 (a, b, c):``) with the
  category's expert as a co-member; within [0.02, 0.98]. Agents do not copy
  the majority of the answers they read (that would make more members pay
  by construction): a hyperedge helps through its expert and in no other
  way, and each further member only costs prompt tokens.
* Errors are independent across agents; the team's answer is its fusion
  (majority vote for the built-in teams).

So the best topology for a category links every agent to that category's
expert, with nothing else: the star of 2-member hyperedges around the expert
(:func:`best_hyperedges`); everyone in one hyperedge (``complete``) is as
accurate and reads more tokens, and a topology that misses the expert for
some agents loses accuracy. SIMULATED: a check that topology learning finds
query-dependent structure, never a claim about real models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hyperteam.testing.sim.worlds import Chance, Turn

if TYPE_CHECKING:
    from hyperteam.testing.sim._writing import Rolls

__all__ = ["CATEGORIES", "PEER", "SELF", "TopologyWorld", "agent_chance", "best_hyperedges", "category", "expert"]

SELF = 0.4
PEER = 0.35


@dataclass(frozen=True, slots=True)
class Category:
    """A problem category: the words that show it, and the cue that makes an agent its expert."""

    name: str
    words: re.Pattern[str]
    cue: re.Pattern[str]


def _c(name: str, words: str, cue: str) -> Category:
    return Category(name, re.compile(words, re.IGNORECASE), re.compile(cue, re.IGNORECASE))


CATEGORIES: tuple[Category, ...] = (
    _c(
        "money",
        r"\$|\bdollars?\b|\bcents?\b|\bprice\b|\bcosts?\b|\bpaid\b|\bpays?\b|\bearns?\b|\bsells?\b|\bsold\b|"
        r"\bbuys?\b|\bbought\b|\bspends?\b|\bspent\b|\bprofit\b|\bsaves?\b",
        r"\baccountants?\b|\bmoney\b",
    ),
    _c(
        "time",
        r"\bhours?\b|\bminutes?\b|\bdays?\b|\bweeks?\b|\bmonths?\b|\byears?\b|\bmiles?\b|\bspeed\b|\bmph\b|\bkm\b",
        r"\bestimators?\b|\btime\b",
    ),
    _c(
        "fraction",
        r"%|\bpercent\b|\bhalf\b|\bthird\b|\bquarter\b|\bfraction\b|\btwice\b|\bratio\b",
        r"algebraist|fraction",
    ),
    _c("count", r"(?!)", r"\bskeptics?\b|\bcounting\b"),
)
_BY_NAME = {c.name: c for c in CATEGORIES}
_EDGE = re.compile(r"^Hyperedge \S+ \(([^)]*)\):", re.MULTILINE)
_YOU = re.compile(r"You are ([A-Za-z0-9_.\-]+)")


def category(question: str) -> str:
    """The category of a problem: the one whose keywords it uses most (``count`` when none)."""
    hits = [(len(c.words.findall(question)), -i, c.name) for i, c in enumerate(CATEGORIES)]
    best = max(hits)
    return best[2] if best[0] > 0 else "count"


def expert(name: str, text: str = "") -> set[str]:
    """The categories an agent called ``name`` (saying ``text`` of itself) is the expert of."""
    who = f"{name} {text}"
    return {c.name for c in CATEGORIES if c.cue.search(who)}


def agent_chance(accuracy: float, question: str, name: str, co_members: Sequence[str], who: str = "") -> float:
    """The chance that agent ``name`` (whose prompt shows ``co_members`` in its hyperedges) solves ``question``."""
    cat = category(question)
    p = accuracy + (SELF if cat in expert(name, who) else 0.0)
    if any(cat in expert(m) for m in co_members if m != name):
        p += PEER
    return min(0.98, max(0.02, p))


def best_hyperedges(question: str, names: Sequence[str]) -> list[list[str]]:
    """The cheapest topology with the best chances for ``question``: every agent paired with the expert.

    No expert among ``names``: no hyperedge helps, so none (everyone works alone).
    """
    cat = category(question)
    experts = [n for n in names if cat in expert(n)]
    if not experts:
        return []
    hub = experts[0]
    return [sorted((hub, n), key=list(names).index) for n in names if n != hub]


def _parts(agent_text: str) -> tuple[str, str, list[str]]:
    """(agent name, what it says of itself, co-members in its prompt's hyperedges)."""
    head, sep, tail = agent_text.rpartition("\n---\n")
    who = tail if sep else agent_text
    found = _YOU.search(who)
    name = found.group(1).rstrip(".,") if found else ""
    members = [m.strip() for block in _EDGE.findall(head if sep else "") for m in block.split(",")]
    return name, who, members


class TopologyWorld:
    """The ``topology`` world (see the module docstring). SIMULATED."""

    name = "topology"

    def chance(self, turn: Turn) -> Chance:
        name, who, members = _parts(turn.agent_text)
        return Chance(correct=agent_chance(turn.accuracy, turn.question, name, members, who), follow=0.0)

    def optim_reply(self, kind: str, prompt: str, *, known: Mapping[str, str] | None, rolls: Rolls) -> str | None:
        return None  # topology learning asks the model nothing but the problems
