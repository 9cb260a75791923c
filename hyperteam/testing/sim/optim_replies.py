"""SIMULATED answers to the optimizer's prompts, for the simulated model (``sim:ACC``) only.

``SimBrain`` hands a prompt here when it carries a ``[[optim:<name>]]``
marker line (every template of ``prompts/optim.yaml`` does). The replies are
well-formed and plausible, and a pure function of the brain's seed and the
request, like every simulated answer; they are not real LLM output:

* evaluator feedback and gradients are templated sentences naming the
  layers and answers they were shown (some local gradients run long, to
  exercise the summariser);
* the updater returns a random small patch of the layer it was shown: edit
  an agent's role or instructions, swap the aggregator, add or remove an
  agent, add a candidate aggregator; about one patch in twelve is malformed
  on purpose (no closing tag, or an agent that does not exist), so that the
  rejection path runs in demos;
* the router picks an option at random;
* the critic knows the gold answer of known questions: it flags a wrong
  solution with probability ACC and a right one with probability (1-ACC)/2;
  the reviser answers right with probability ACC.

In the simulator an agent's accuracy does not depend on its prompt, so
edits to roles and instructions only re-draw its answers; structural
patches (more agents, another aggregator) change accuracy as they would.
The updater uses only the operations its prompt offers (a trainer may
restrict them to prompts). In a SIMULATED world (``sim:0.6?world=skills``)
the world answers the prompts it knows first; see
:mod:`hyperteam.testing.sim.worlds`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from hyperteam.agents.parsing import extract_answer
from hyperteam.testing.sim._writing import Rolls, chain_of_thought, guess, numbers_in, pick_wrong

if TYPE_CHECKING:
    from hyperteam.testing.sim.brain import SimBrain
    from hyperteam.testing.sim.worlds import World

MARKER = re.compile(r"\[\[optim:(\w+)\]\]")

_TIPS = (
    "Restate what the question asks for before computing anything.",
    "Write each intermediate quantity with its unit.",
    "Check the final number against the question's wording.",
    "Recompute every product and difference once more.",
    "Watch for quantities that are given per item or per day.",
)
_ROLES = (
    "a careful math tutor who checks units",
    "a precise accountant who lists every quantity",
    "a skeptical reviewer who looks for traps",
    "an algebraist who writes one equation per sentence",
)
_FLAWS = (
    "a quantity given per unit was used as a total",
    "an intermediate result was added instead of multiplied",
    "the question asked for a difference, not a total",
    "one of the stated quantities was left out",
)


def respond_optim(
    brain: SimBrain,
    kind: str,
    full: str,
    prompt: str,
    digest: bytes,
    index: int,
    acc: float,
    *,
    world: World | None = None,
) -> str:
    """The simulated reply to an optimizer prompt of kind ``kind`` (the marker's name).

    A world (``sim:0.6?world=skills``) may answer it instead; see :mod:`hyperteam.testing.sim.worlds`.
    """
    rolls = Rolls(hashlib.blake2b(digest + b"optim" + index.to_bytes(8, "little")).digest())
    if world is not None:
        found, _ = brain._find_question(full)
        known = {"question": found.question, "gold": found.gold} if found is not None else None
        reply = world.optim_reply(kind, prompt, known=known, rolls=rolls)
        if reply is not None:
            return reply
    if kind == "evaluate":
        gold = _field(prompt, "Expected answer")
        answer = _field(prompt, "The team's final answer")
        return f"<feedback>The team answered {answer}, but the answer is {gold}: {rolls.pick(_FLAWS)}.</feedback>"
    if kind in ("global_gradient", "local_gradient"):
        return _gradient(kind, prompt, rolls)
    if kind == "summarize":
        limit = int(_search(r"at most (\d+) characters", prompt) or 400)
        body = prompt.split("drop repetition.", 1)[-1].split("\n---", 1)[0].strip()
        return f"<gradient>{body[: int(limit * 0.6)]}</gradient>"
    if kind == "update":
        return _patch(prompt, rolls)
    if kind == "route":
        n = len(re.findall(r"^\[\d+\] ", prompt, flags=re.MULTILINE)) or 1
        k = 1 + rolls.next64() % n
        return f"This problem has several dependent steps.\nReason: option {k} suits its structure.\nChoice: {k}"
    if kind in ("critique", "revise"):
        return _solve(brain, kind, full, prompt, rolls, acc)
    return "<gradient>No change is needed.</gradient>"


def _gradient(kind: str, prompt: str, rolls: Rolls) -> str:
    if kind == "global_gradient":
        layers = re.findall(r"^Layer \d+ '([^']+)'", prompt, flags=re.MULTILINE) or ["the last"]
        text = (
            f"The final layer {layers[-1]!r} passed on wrong answers from layer {layers[0]!r}; "
            f"{rolls.pick(_FLAWS)}. The agents should {rolls.pick(_TIPS).lower()}"
        )
        return f"<gradient>{text}</gradient>"
    layer = _search(r"^Layer: (\S+)", prompt) or "this layer"
    text = f"Layer {layer}: its agents agreed on wrong answers because {rolls.pick(_FLAWS)}. {rolls.pick(_TIPS)}"
    if rolls.uniform() < 0.2:  # a rambling gradient, longer than any bound: the summariser must shorten it
        text += " " + " ".join(rolls.pick(_TIPS) for _ in range(40))
    return f"<gradient>{text}</gradient>"


def _patch(prompt: str, rolls: Rolls) -> str:
    layer: dict[str, Any] = json.loads(_search(r"<layer>(.*?)</layer>", prompt, flags=re.DOTALL) or "{}")
    agents = [a["name"] for a in layer.get("agents", [])] or ["agent"]
    fusions = [f.strip() for f in (_search(r"AGGREGATOR is one of: ([^.]+)\.", prompt) or "majority_vote").split(",")]
    current = layer.get("fusion") if isinstance(layer.get("fusion"), str) else None
    others = [f for f in fusions if f != current and f not in layer.get("candidates", [])] or fusions
    max_agents = int(_search(r"at most (\d+) agents", prompt) or 7)
    roll = rolls.uniform()
    agent = rolls.pick(agents)
    if roll < 0.04:
        return '<patch>{"ops": [{"op": "set_role", "agent": "' + agent + '", "value": "a tutor"}]'  # never closed
    if roll < 0.08:
        op: dict[str, Any] = {"op": "remove_agent", "agent": "ghost"}
    elif roll < 0.40:
        old = next((a.get("instructions", "") for a in layer.get("agents", []) if a["name"] == agent), "")
        op = {"op": "set_instructions", "agent": agent, "value": f"{old} {rolls.pick(_TIPS)}".strip()}
    elif roll < 0.55:
        op = {"op": "set_role", "agent": agent, "value": rolls.pick(_ROLES)}
    elif roll < 0.70:
        op = {"op": "set_fusion", "value": rolls.pick(others)}
    elif roll < 0.85 and len(agents) < max_agents:
        prefix = layer.get("name", "layer")
        name = next(f"{prefix}_{i}" for i in range(1, 99) if f"{prefix}_{i}" not in agents)
        op = {"op": "add_agent", "agent": {"name": name, "role": rolls.pick(_ROLES), "instructions": rolls.pick(_TIPS)}}
    elif roll < 0.92 and len(agents) > 1:
        op = {"op": "remove_agent", "agent": agent}
    else:
        op = {"op": "add_candidate", "value": rolls.pick(others)}
    allowed = set(re.findall(r'^\{"op": "(\w+)"', prompt, flags=re.MULTILINE))
    if allowed and op["op"] not in allowed:
        # the trainer restricted the operations (prompts only, say): edit the instructions instead
        old = next((a.get("instructions", "") for a in layer.get("agents", []) if a["name"] == agent), "")
        op = {"op": "set_instructions", "agent": agent, "value": f"{old} {rolls.pick(_TIPS)}".strip()}
    return f"The gradient points at this layer; one small change:\n<patch>{json.dumps({'ops': [op]})}</patch>"


def _solve(brain: SimBrain, kind: str, full: str, prompt: str, rolls: Rolls, acc: float) -> str:
    known, _ = brain._find_question(full)
    proposed = prompt.split("Proposed solution:", 1)[-1].split("\n---", 1)[0]
    answer = extract_answer(proposed.split("Critique of it:", 1)[0])
    if kind == "critique":
        if known is None:
            return "I found no mistake.\nVerdict: OK"
        wrong = answer != known.gold
        flag = rolls.uniform() < (acc if wrong else (1.0 - acc) / 2)
        if flag:
            return f"Step 2 is wrong: {rolls.pick(_FLAWS)}.\nVerdict: FIX"
        return "Each step follows from the problem; the arithmetic checks out.\nVerdict: OK"
    if known is None:
        numbers = numbers_in(proposed)
        return chain_of_thought(guess(numbers, rolls), numbers, "guess", rolls)
    numbers, wrong_answers = brain._facts_for(known)
    final = known.gold if rolls.uniform() < acc else pick_wrong(wrong_answers, rolls)
    return chain_of_thought(final, numbers, "solve", rolls)


def _field(prompt: str, label: str) -> str:
    return _search(rf"^{re.escape(label)}: (.*)$", prompt, flags=re.MULTILINE) or "?"


def _search(pattern: str, text: str, *, flags: int = re.MULTILINE) -> str | None:
    found = re.search(pattern, text, flags)
    return found.group(1).strip() if found else None
