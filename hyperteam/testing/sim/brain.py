"""The simulated model's answers: right with a set probability, wrong in plausible ways.

The brain knows the questions and gold answers of the suites found in the
data dir. For a prompt it finds the question (a dict lookup per line, so the
cost grows with the prompt, not with the number of known questions), reads
any candidate answers (``#### N``) that peers or earlier layers put in the
prompt, and writes a short chain of thought ending in ``#### N``. Every
choice is a pure function of the brain's seed and the request.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from hyperteam.agents._numbers import normalize_number
from hyperteam.errors import ConfigError
from hyperteam.evals import datasets, hub
from hyperteam.models.tokenizer import message_text
from hyperteam.testing.sim._writing import (
    Rolls,
    chain_of_thought,
    guess,
    numbers_in,
    pick_wrong,
    wrong_options,
)
from hyperteam.testing.sim.worlds import Turn, World, get_world, split_world

__all__ = ["SimBrain"]

DEFAULT_SUITES = ("gsm8k", "gsm-hard", "multiarith", "demo", "generated")

# Templates wrap questions in labels like "Question 3:" or "**Problem.**".
_LABEL = re.compile(r"^[#>*\s]*(?:question|problem|task|input|query|q)\s*\d*\s*\**\s*[:.)\-]\s*\**\s*", re.IGNORECASE)
_CANDIDATE = re.compile(r"####\s*(-?\s*\$?\s*-?[\d,]*\.?\d+)")
_MODEL_ACCURACY = re.compile(r"sim[-:]([0-9]*\.?[0-9]+)")
# A question may sit inside a longer line ("Solve this: ..."); when no line
# matches exactly, windows of this many characters starting at each word are
# looked up instead.
_HEAD = 40
# Known questions start with a capital, a digit or "$"; trying only those
# word starts keeps the scan of long prompts cheap.
_QUESTION_START = re.compile(r"(?<!\S)[A-Z0-9$]")


@dataclass(frozen=True, slots=True)
class _Known:
    question: str
    gold: str


@dataclass(frozen=True, slots=True)
class _Table:
    exact: dict[str, _Known]
    heads: dict[str, tuple[str, ...]]
    min_len: int
    max_len: int


def _norm(text: str) -> str:
    return " ".join(text.split())


@lru_cache(maxsize=8)
def _load_table(data_dir: str, suites: tuple[str, ...]) -> _Table:
    """Reads the suites once per process; brains with the same data share the table."""
    exact: dict[str, _Known] = {}
    for suite in suites:
        if not data_dir and suite not in ("demo", "generated"):
            continue  # no data dir: only the built-in suites (demo, generated)
        for split in datasets.splits(suite):
            try:
                problems = datasets.load(suite, split=split, data_dir=data_dir)
            except ConfigError:
                continue  # absent suites are fine: the brain knows fewer questions
            for problem in problems:
                # The first suite listed wins when two suites share a question.
                exact.setdefault(_norm(problem.question), _Known(problem.question, problem.answer))
    return _build(exact)


def _build(exact: dict[str, _Known]) -> _Table:
    heads: dict[str, list[str]] = {}
    for key in exact:
        if len(key) >= _HEAD:
            heads.setdefault(key[:_HEAD], []).append(key)
    lengths = [len(k) for k in exact] or [0]
    return _Table(exact, {h: tuple(ks) for h, ks in heads.items()}, min(lengths), max(lengths))


class SimBrain:
    """Decides what the simulated model says.

    Args:
        accuracy: probability of a correct answer for a known question, for
            model names that do not set their own (``sim-0.9`` does).
        seed: changes every answer while keeping them reproducible.
        follow_majority: probability of answering the majority of the
            candidate answers found in the prompt, when there are some.
        data_dir: where the suites are; defaults to ``$HYPERTEAM_DATA_DIR``.
            Missing suites (or no data dir at all) are skipped.
        suites: the suites whose questions the brain knows.
        problems: more known problems (``Problem`` objects, e.g. generated ones) beside the suites'.
        world: the SIMULATED world (:mod:`hyperteam.testing.sim.worlds`) for model
            names that do not name their own (``sim:0.6?world=skills`` does);
            None is the plain simulator, where prompts cannot matter.

    Example:
        >>> brain = SimBrain(accuracy=0.8, data_dir="/nonexistent")
        >>> text = brain.respond("sim", [{"role": "user", "content": "What is 2 + 3?"}])[0]
        >>> text.splitlines()[-1].startswith("#### ")
        True
    """

    def __init__(
        self,
        *,
        accuracy: float = 0.7,
        seed: int = 0,
        follow_majority: float = 0.8,
        data_dir: str | os.PathLike[str] | None = None,
        suites: Sequence[str] = DEFAULT_SUITES,
        problems: Sequence[datasets.Problem] = (),
        world: str | None = None,
    ) -> None:
        for label, value in (("accuracy", accuracy), ("follow_majority", follow_majority)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{label} must be between 0 and 1, got {value}")
        for suite in suites:
            datasets.splits(suite)  # raises ConfigError naming an unknown suite
        self.accuracy = float(accuracy)
        self.seed = int(seed)
        self.follow_majority = float(follow_majority)
        self.data_dir = data_dir
        self.suites = tuple(suites)
        self._table_cache: _Table | None = None
        self._extra = tuple(problems)
        if world is not None:
            get_world(world)  # raises ConfigError naming an unknown world
        self.world = world
        self._worlds: dict[str, World | None] = {}
        self._accuracies: dict[str, float] = {}
        # Per known question: its numbers and its wrong answers, computed once.
        self._facts: dict[str, tuple[list[str], tuple[str, ...]]] = {}

    @property
    def known_count(self) -> int:
        """The number of distinct questions the brain knows (loads them on first use)."""
        return len(self._table().exact)

    def gold_for(self, question: str) -> str | None:
        """Returns the normalised gold answer of a known question, else None."""
        known = self._table().exact.get(_norm(question))
        return known.gold if known else None

    def accuracy_for(self, model: str) -> float:
        """Returns the accuracy a model name asks for: ``sim-0.8`` or ``sim:0.8`` mean 0.8.

        Any other name (or an accuracy outside 0..1) gets the brain's default.
        """
        cached = self._accuracies.get(model)
        if cached is None:
            cached = self.accuracy
            match = _MODEL_ACCURACY.fullmatch(model.strip().partition("?")[0])
            if match and 0.0 <= float(match.group(1)) <= 1.0:
                cached = float(match.group(1))
            self._accuracies[model] = cached
        return cached

    def world_for(self, model: str) -> World | None:
        """Returns the world a model name asks for (``sim:0.6?world=skills``), else the brain's own.

        Raises:
            ConfigError: the name asks for an unknown world or has another query.
        """
        if model not in self._worlds:
            name = split_world(model.strip())[1] or self.world
            self._worlds[model] = get_world(name) if name else None
        return self._worlds[model]

    def respond(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
        seed: int | None = None,
        n: int = 1,
        first_index: int = 0,
        accuracy: float | None = None,
        world: str | None = None,
    ) -> list[str]:
        """Returns ``n`` completions for a chat request.

        Args:
            model: the model name (it may set the accuracy, see ``accuracy_for``).
            messages: OpenAI chat messages.
            temperature: part of the request, so it changes the answers.
            seed: the request's seed, likewise.
            n: how many choices.
            first_index: index of the first choice; callers drawing repeated
                samples of one request pass distinct ranges.
            accuracy: overrides the accuracy the model name implies.
            world: overrides the world the model name implies (see ``world_for``).

        Returns:
            ``n`` texts, each a short chain of thought ending in a ``#### N`` line.
        """
        acc = self.accuracy_for(model) if accuracy is None else accuracy
        world = get_world(world) if world is not None else self.world_for(model)
        texts = [message_text(m) for m in messages]
        base = self._base_digest(model, messages, texts, temperature, seed)
        full = "\n".join(texts)
        if texts and "[[optim:" in texts[-1]:
            # The optimizer's prompts (hyperteam/prompts/optim.yaml) want gradients, patches,
            # routes and critiques, not solutions; see hyperteam.testing.sim.optim_replies.
            from hyperteam.testing.sim.optim_replies import MARKER, respond_optim

            found = MARKER.search(texts[-1])
            if found is not None:
                kind = found.group(1)
                indices = range(first_index, first_index + n)
                return [respond_optim(self, kind, full, texts[-1], base, i, acc, world=world) for i in indices]
        known, question_at = self._find_question(full)
        candidates = [
            c
            for m in _CANDIDATE.finditer(full, question_at + 1 if known else 0)
            if (c := normalize_number(m.group(1).replace(" ", ""))) is not None
        ]
        majority = _majority(candidates)
        if known is not None:
            numbers, wrong = self._facts_for(known)
        else:
            numbers, wrong = numbers_in(texts[-1] if texts else ""), ()
        follow, overturn, shared = self.follow_majority, 0.0, None
        if world is not None and known is not None:
            chance = world.chance(
                Turn(model, known.question, known.gold, texts, _after_question(full, question_at), candidates, acc)
            )
            acc = min(1.0, max(0.0, chance.correct))
            follow = follow if chance.follow is None else chance.follow
            overturn = chance.wrong_majority
            shared = chance.draw
        out = []
        for index in range(first_index, first_index + n):
            rolls = Rolls(hashlib.blake2b(base + index.to_bytes(8, "little")).digest())
            if majority is not None and rolls.uniform() < follow:
                answer, mode = majority, "majority"
                if known is not None and overturn and majority == known.gold and rolls.uniform() < overturn:
                    answer, mode = pick_wrong(wrong, rolls), "solve"  # a verifier that talks itself out of it
            elif known is not None:
                correct = (rolls.uniform() if shared is None else shared) < acc
                answer = known.gold if correct else pick_wrong(wrong, rolls)
                mode = "solve"
            else:
                answer, mode = guess(numbers, rolls), "guess"
            out.append(chain_of_thought(answer, numbers, mode, rolls))
        return out

    def _table(self) -> _Table:
        if self._table_cache is None:
            raw = self.data_dir if self.data_dir is not None else os.environ.get(datasets.DATA_DIR_ENV)
            found = raw and Path(raw).expanduser().is_dir()
            if not found and self.data_dir is None:  # suites downloaded earlier: their questions are known too
                raw = str(hub.cache_dir())
                found = Path(raw).is_dir()
            table = _load_table(str(Path(raw).expanduser().resolve()) if found else "", self.suites)
            self._table_cache = _extend(table, self._extra) if self._extra else table
        return self._table_cache

    def _base_digest(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        texts: Iterable[str],
        temperature: float | None,
        seed: int | None,
    ) -> bytes:
        temp = None if temperature is None else float(temperature)
        h = hashlib.blake2b(f"{self.seed}\x1f{model}\x1f{temp!r}\x1f{seed!r}".encode(), digest_size=32)
        for message, text in zip(messages, texts, strict=True):
            h.update(b"\x1d")
            h.update(str(message.get("role", "")).encode())
            h.update(b"\x1e")
            h.update(text.encode())
        return h.digest()

    def _find_question(self, full: str) -> tuple[_Known | None, int]:
        """Finds the last known question in the prompt, and where it first appears.

        Candidate answers are read only after that point, so few-shot examples
        placed before the question do not count as peers' answers.
        """
        table = self._table()
        if not table.exact:
            return None, -1
        first_seen: dict[str, int] = {}
        last: _Known | None = None
        pos = 0
        normalised: list[tuple[str, int]] = []  # lines long enough to hold a question, for the second pass
        for line in full.split("\n"):
            size = len(line)
            if size >= table.min_len:
                norm = _norm(line)
                normalised.append((norm, pos))
                if size <= table.max_len + 80:
                    known = table.exact.get(_LABEL.sub("", norm, count=1).strip("\"'` "))
                    if known is not None:
                        last = known
                        first_seen.setdefault(known.question, pos)
            pos += size + 1
        if last is None:
            for norm, offset in normalised:
                known = _find_inside(norm, table)
                if known is not None:
                    last = known
                    first_seen.setdefault(known.question, offset)
        return (last, first_seen[last.question]) if last is not None else (None, -1)

    def _facts_for(self, known: _Known) -> tuple[list[str], tuple[str, ...]]:
        facts = self._facts.get(known.question)
        if facts is None:
            numbers = numbers_in(known.question)
            facts = self._facts[known.question] = (numbers, wrong_options(known.gold, numbers, self.seed))
        return facts


def _extend(table: _Table, problems: Sequence[datasets.Problem]) -> _Table:
    """The table with ``problems`` added (the suites' questions win a clash), for one brain only."""
    exact = dict(table.exact)
    for problem in problems:
        exact.setdefault(_norm(problem.question), _Known(problem.question, problem.answer))
    return _build(exact)


def _after_question(full: str, question_at: int) -> str:
    """The prompt after the line that holds the problem: earlier answers, then who the agent is."""
    end = full.find("\n", question_at)
    return full[end + 1 :] if end >= 0 else ""


def _find_inside(line: str, table: _Table) -> _Known | None:
    best: str | None = None
    last_start = len(line) - _HEAD
    for match in _QUESTION_START.finditer(line):
        start = match.start()
        if start > last_start:
            break
        keys = table.heads.get(line[start : start + _HEAD])
        if keys:
            for key in keys:
                if line.startswith(key, start) and (best is None or len(key) > len(best)):
                    best = key
    return table.exact[best] if best is not None else None


def _majority(candidates: list[str]) -> str | None:
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c] = counts.get(c, 0) + 1
    best: str | None = None
    for c, count in counts.items():  # dicts keep first-seen order, so ties go to the first
        if best is None or count > counts[best]:
            best = c
    return best
