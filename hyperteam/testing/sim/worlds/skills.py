"""The SIMULATED ``skills`` world: prompts that address a problem's pitfalls help, some layers hurt.

Rules (all pure functions of the texts, so the optimum is computable):

* Each problem carries one to three latent *pitfalls* out of seven categories
  (:data:`CATEGORIES`), found from its wording (``each``/``per`` -> per-unit
  quantities, ``%`` -> percentages, ...); a problem whose text matches none
  gets one chosen by a hash of its text.
* An agent *addresses* a category when its role or instructions contain the
  category's cue word (``per-unit``, ``percent``, ``difference``, ``running
  total``, ``time unit``, ``fraction``, ``money``). Its chance of a right
  answer is ``ACC + 0.3 * (share of the problem's pitfalls addressed)``, less
  0.01 per addressed category the problem lacks, 0.01 per sentence that
  addresses nothing beyond the first two, and 0.15 per contradictory sentence
  ("skip the check", "guess"); within [0.02, 0.98].
* Errors are correlated: one draw per problem is shared by every agent (a
  model's blind spot is the same in every copy), so more agents of the same
  kind or another vote do not help; only what the prompts address does.
* A verifier (role or instructions naming verify/check/review) that reads a
  right proposed answer overturns it with probability 0.1: the built-in
  ``ann-gsm8k``'s verify layer costs accuracy here, and removing it is part
  of the optimum.
* The optimizer's side is noisy and passes on only what it was shown: the
  evaluator names one of the problem's pitfalls with probability 0.55 and a
  wrong category otherwise, and says that a layer overturned a right answer
  (when the layer answers it was shown say so) with probability 0.55; the
  gradients repeat what their prompts contain; the updater turns a
  gradient's advice into a patch with probability 0.55, and otherwise
  proposes a random patch, two in three of them neutral or harmful.

The optimum is every agent addressing the categories that pay on the
problems (:func:`best_categories`) with no verifier layer; its accuracy on a
set of problems is exact (:func:`optimum_accuracy`). SIMULATED: a check of
the training mechanism, never a claim about real models.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperteam.testing.sim.worlds import Chance, Turn

if TYPE_CHECKING:
    from hyperteam.testing.sim._writing import Rolls

__all__ = [
    "CATEGORIES",
    "Category",
    "SkillsWorld",
    "agent_chance",
    "best_categories",
    "optimum_accuracy",
    "optimum_team",
    "pitfalls",
]

GAIN = 0.3
IRRELEVANT = 0.01
FLUFF = 0.01
FREE_SENTENCES = 2
CONTRADICTION = 0.15
OVERTURN = 0.1
EVALUATOR_RIGHT = 0.55
FOLLOW_GRADIENT = 0.55


@dataclass(frozen=True, slots=True)
class Category:
    """A pitfall category: how a problem shows it, how a prompt addresses it, what feedback says."""

    name: str
    detect: re.Pattern[str]
    cue: re.Pattern[str]
    advice: str
    flaw: str


def _c(name: str, detect: str, cue: str, advice: str, flaw: str) -> Category:
    return Category(name, re.compile(detect, re.IGNORECASE), re.compile(cue, re.IGNORECASE), advice, flaw)


CATEGORIES: tuple[Category, ...] = (
    _c("per_unit", r"\b(each|per|every|apiece)\b", r"per-unit",
       "Multiply per-unit amounts by their counts before adding them.",
       "a per-unit amount was used as if it were the whole amount"),
    _c("percent", r"%|\bpercent", r"\bpercent",
       "Convert each percent to a share of the right base amount.",
       "a percent was taken of the wrong base amount"),
    _c("difference", r"\b(more than|less than|fewer|left|remain\w*|difference|older|younger|longer|shorter)\b",
       r"\bdifference",
       "When asked how many more, fewer or left, answer the difference, not the sum.",
       "the question asked for a difference but the answer gave a sum"),
    _c("totals", r"\b(total|altogether|in all|combined|together|sum)\b", r"running total",
       "Keep a running total and write down each intermediate result.",
       "one step of a multi-step running total was dropped"),
    _c("time", r"\b(hours?|minutes?|days?|weeks?|months?|years?)\b", r"time unit",
       "Convert every time unit to one unit before combining rates.",
       "two time units (such as hours and minutes) were mixed"),
    _c("fraction", r"\b(half|halves|third|quarter|fourth|fifth|twice|double|triple|thrice)\b|\d/\d", r"\bfraction",
       "Turn each fraction or multiple (half, twice, a third) into an explicit product.",
       "a fraction or multiple was applied the wrong way round"),
    _c("money", r"\$|\b(dollars?|cents?|price|cost|costs|pays?|paid|earns?|sells?|sold|buys?|bought|profit)\b",
       r"\bmoney",
       "Track money in and money out separately, with the price of every item.",
       "money spent and money earned were confused"),
)  # fmt: skip
_BY_NAME = {c.name: c for c in CATEGORIES}
_CONTRADICTORY = re.compile(
    r"\b(skip|guess|do not check|don't check|no need to check|without checking|quickly|first number)\b", re.IGNORECASE
)
_VERIFIER = re.compile(r"verif|check|review|critic|audit", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+")
_MAX_PITFALLS = 3


def _hash01(*parts: str) -> float:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def pitfalls(question: str) -> tuple[str, ...]:
    """The latent pitfall categories of a problem (one to three), a pure function of its text."""
    found = [c.name for c in CATEGORIES if c.detect.search(question)]
    if not found:
        return (min(CATEGORIES, key=lambda c: _hash01("pick", question, c.name)).name,)
    if len(found) > _MAX_PITFALLS:
        found = sorted(sorted(found, key=lambda n: _hash01("keep", question, n))[:_MAX_PITFALLS], key=_order)
    return tuple(found)


def _order(name: str) -> int:
    return next(i for i, c in enumerate(CATEGORIES) if c.name == name)


def addressed(text: str) -> set[str]:
    """The categories whose cue word ``text`` (an agent's role and instructions) contains."""
    return {c.name for c in CATEGORIES if c.cue.search(text)}


def agent_chance(accuracy: float, question: str, agent_text: str) -> float:
    """The chance that an agent who says ``agent_text`` (role, instructions) solves ``question``."""
    traps = set(pitfalls(question))
    cover = addressed(agent_text)
    sentences = [s for s in _SENTENCE.findall(agent_text) if s.strip()]
    fluff = sum(1 for s in sentences if not addressed(s))
    contradictions = sum(1 for s in sentences if _CONTRADICTORY.search(s))
    p = accuracy + GAIN * len(traps & cover) / len(traps)
    p -= IRRELEVANT * len(cover - traps) + FLUFF * max(0, fluff - FREE_SENTENCES) + CONTRADICTION * contradictions
    return min(0.98, max(0.02, p))


def draw(question: str) -> float:
    """The problem's shared uniform draw: an agent is right when it is below the agent's chance."""
    return _hash01("skills-draw", " ".join(question.split()))


def _agent_part(agent_text: str) -> str:
    """Who the agent is: the text after the agent template's last ``---`` line (prompts/agent.yaml)."""
    _, sep, tail = agent_text.rpartition("\n---\n")
    return tail if sep else ""


def best_categories(questions: Iterable[str], accuracy: float) -> tuple[str, ...]:
    """The set of categories to address that maximises the mean chance over ``questions`` (exhaustive)."""
    qs = list(questions)
    best: tuple[float, tuple[str, ...]] = (-1.0, ())
    names = [c.name for c in CATEGORIES]
    for k in range(len(names) + 1):
        for subset in itertools.combinations(names, k):
            text = " ".join(_BY_NAME[n].advice for n in subset)
            score = sum(agent_chance(accuracy, q, text) for q in qs) / max(len(qs), 1)
            if score > best[0] + 1e-12:
                best = (score, subset)
    return best[1]


def optimal_instructions(categories: Sequence[str]) -> str:
    """Instructions that address exactly ``categories``."""
    return " ".join(_BY_NAME[n].advice for n in categories)


def optimum_accuracy(questions: Iterable[str], accuracy: float, categories: Sequence[str]) -> float:
    """The exact accuracy of the optimal team (every agent addressing ``categories``, no verifier)."""
    text = optimal_instructions(categories)
    qs = list(questions)
    return sum(draw(q) < agent_chance(accuracy, q, text) for q in qs) / max(len(qs), 1)


def optimum_team(spec: Mapping[str, Any], categories: Sequence[str]) -> dict[str, Any]:
    """The optimal team of the same shape as ``spec``: verifier layers removed, every agent addressing ``categories``.

    The agents keep their names and roles; a role that itself addresses a category is replaced
    by a neutral one, so that the team addresses exactly ``categories``.
    """
    data = json.loads(json.dumps(spec, default=str))
    layers = [
        layer
        for i, layer in enumerate(data["layers"])
        if i == 0
        or not any(_VERIFIER.search(f"{a.get('role', '')} {a.get('instructions', '')}") for a in layer["agents"])
    ]
    for layer in layers:
        for agent in layer["agents"]:
            if addressed(agent.get("role", "")) or _VERIFIER.search(agent.get("role", "")):
                agent["role"] = "a math solver"
            agent["instructions"] = optimal_instructions(categories)
    data["layers"] = layers
    return data


class SkillsWorld:
    """The ``skills`` world (see the module docstring). SIMULATED."""

    name = "skills"

    def chance(self, turn: Turn) -> Chance:
        who = _agent_part(turn.agent_text)
        p = agent_chance(turn.accuracy, turn.question, who)
        overturn = OVERTURN if turn.candidates and _VERIFIER.search(who) else 0.0
        return Chance(correct=p, wrong_majority=overturn, draw=draw(turn.question))

    def optim_reply(self, kind: str, prompt: str, *, known: Mapping[str, str] | None, rolls: Rolls) -> str | None:
        if kind == "evaluate":
            return _evaluate(prompt, known, rolls)
        if kind == "global_gradient":
            return f"<gradient>{_pass_on(prompt.split('Problems the team got wrong', 1)[-1])}</gradient>"
        if kind == "local_gradient":
            return _local_gradient(prompt)
        if kind == "update":
            return _update(prompt, rolls)
        return None


def _evaluate(prompt: str, known: Mapping[str, str] | None, rolls: Rolls) -> str:
    question = known["question"] if known else ""
    gold = known["gold"] if known else _field(prompt, "Expected answer")
    sentences = []
    layers = re.findall(r"(?:^|\| )([\w.\-]+): [^|\n]*?-> ([^|\n]+?)(?= \||$)", _field(prompt, "Layer answers", ""))
    right_then_wrong = [
        (layers[i][0], layers[i + 1][0])
        for i in range(len(layers) - 1)
        if layers[i][1].strip() == gold and layers[i + 1][1].strip() != gold
    ]
    if right_then_wrong and rolls.uniform() < EVALUATOR_RIGHT:
        good, bad = right_then_wrong[0]
        sentences.append(f"Layer {good} had the right answer {gold}, but layer {bad} overturned it.")
    traps = pitfalls(question) if question else ()
    if traps and rolls.uniform() < EVALUATOR_RIGHT:
        category = _BY_NAME[rolls.pick(list(traps))]
    else:
        category = _BY_NAME[rolls.pick([c.name for c in CATEGORIES if c.name not in traps])]
    sentences.append(f"The reasoning went wrong where {category.flaw}.")
    return "<feedback>" + " ".join(sentences) + "</feedback>"


def _mentions(text: str) -> list[str]:
    """The categories a text names by their flaw or advice, most mentioned first."""
    counts = {c.name: text.count(c.flaw) + text.count(c.advice) for c in CATEGORIES}
    return [n for n, k in sorted(counts.items(), key=lambda kv: (-kv[1], _order(kv[0]))) if k]


def _overturned(text: str) -> list[str]:
    return list(dict.fromkeys(name.rstrip(".") for name in re.findall(r"layer ([\w.\-]+) overturned", text)))


def _pass_on(text: str) -> str:
    """A gradient that repeats what the text it was shown says: the flaws most named, and overturning layers."""
    parts = [f"Most frequent flaw: {_BY_NAME[n].flaw}; advice: {_BY_NAME[n].advice}" for n in _mentions(text)[:2]]
    parts += [f"Layer {name} overturned right answers: remove layer {name}." for name in _overturned(text)]
    return " ".join(parts) or "The feedback names no clear cause."


def _local_gradient(prompt: str) -> str:
    target = _field(prompt, "Layer", "").split(" ")[0]
    shown = prompt.split("Global gradient of the team:", 1)[-1]
    removes = [name for name in re.findall(r"remove layer ([\w.\-]+)", shown) if name.rstrip(".") == target]
    parts = [f"Layer {target} overturned right answers: remove layer {target}."] if removes else []
    parts += [f"Agents of layer {target}: {_BY_NAME[n].advice}" for n in _mentions(shown)[:2]]
    return "<gradient>" + (" ".join(parts) or f"Layer {target}: nothing specific to change.") + "</gradient>"


_FLUFF = (
    "Be thorough.",
    "Think about the problem carefully.",
    "Write clearly.",
    "Stay focused on the question.",
)
_HARMFUL = (
    "Answer quickly and skip the re-check.",
    "If unsure, guess the most likely number.",
)
_ROLES = ("a patient teacher", "a precise solver", "a thoughtful student")


def _update(prompt: str, rolls: Rolls) -> str:
    layer: dict[str, Any] = json.loads(_search(r"<layer>(.*?)</layer>", prompt) or "{}")
    name = str(layer.get("name", ""))
    agents = layer.get("agents", []) or [{"name": "agent", "instructions": ""}]
    gradient = prompt.split("Its gradient (what should change):", 1)[-1].split("Earlier gradients", 1)[0]
    gradient = gradient.split("\n---", 1)[0]
    allowed = set(re.findall(r'^\{"op": "(\w+)"', prompt, flags=re.MULTILINE))
    if rolls.uniform() < FOLLOW_GRADIENT:
        if f"remove layer {name}" in gradient and "remove_layer" in allowed:
            return _patch([{"op": "remove_layer"}], "The gradient says this layer overturns right answers.")
        have = set.intersection(*(addressed(f"{a.get('role', '')} {a.get('instructions', '')}") for a in agents))
        todo = [n for n in _mentions(gradient) if n not in have]
        if todo:
            advice = _BY_NAME[todo[0]].advice
            ops = [
                {"op": "set_instructions", "agent": a["name"], "value": f"{a.get('instructions', '')} {advice}".strip()}
                for a in agents[:5]
            ]
            return _patch(ops, "Following the gradient:")
    roll = rolls.uniform()
    agent = agents[int(rolls.uniform() * len(agents))]
    old = str(agent.get("instructions", ""))
    if roll < 0.35:  # neutral: a new role or a sentence that addresses nothing
        ops: list[dict[str, Any]] = [{"op": "set_role", "agent": agent["name"], "value": rolls.pick(list(_ROLES))}]
        if roll < 0.2:
            ops = [{"op": "set_instructions", "agent": agent["name"], "value": f"{old} {rolls.pick(list(_FLUFF))}"}]
    elif roll < 0.67:  # harmful: a contradictory instruction
        ops = [{"op": "set_instructions", "agent": agent["name"], "value": f"{old} {rolls.pick(list(_HARMFUL))}"}]
    elif roll < 0.85:  # a random category, which may or may not be one the problems have
        advice = rolls.pick([c.advice for c in CATEGORIES])
        ops = [{"op": "set_instructions", "agent": agent["name"], "value": f"{old} {advice}".strip()}]
    elif roll < 0.93:
        ops = [{"op": "set_fusion", "value": rolls.pick(["majority_vote", "llm_select", "llm_synthesize"])}]
    else:  # a structural guess: another checking layer after this one (it hurts in this world)
        checker = {"name": f"{name}_check", "role": "a careful reviewer", "instructions": "Check the answer."}
        ops = [{"op": "add_layer", "layer": {"name": f"{name}_review", "agents": [checker]}}]
    if allowed and any(op["op"] not in allowed for op in ops):  # restricted (prompts only): a neutral edit
        ops = [{"op": "set_instructions", "agent": agent["name"], "value": f"{old} {rolls.pick(list(_FLUFF))}"}]
    return _patch(ops, "One change to try:")


def _patch(ops: list[dict[str, Any]], lead: str) -> str:
    return f"{lead}\n<patch>{json.dumps({'ops': ops})}</patch>"


def _field(prompt: str, label: str, default: str = "?") -> str:
    found = re.search(rf"{re.escape(label)}: (.*)$", prompt, flags=re.MULTILINE)
    return found.group(1).strip() if found else default


def _search(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text, flags=re.DOTALL)
    return found.group(1).strip() if found else None
