"""SIMULATED worlds: opt-in rules that make the simulated model's accuracy depend on the team.

In the plain simulator (``sim:ACC``) an agent is right with probability ACC
whatever its prompt says, so nothing a trainer changes in a prompt can help:
it is the null control. A *world* (``sim:0.6?world=skills``, or
``hyperteam sim --world skills``) is consulted by :class:`~hyperteam.testing.sim.SimBrain`
for every request about a known problem and says how likely a right answer
is, given the problem, the agent's messages (its role and instructions, its
peers' answers) and the model's base accuracy. A world may also answer the
optimizer's prompts itself (its evaluator and updater are part of the world).

Worlds check mechanisms (does feedback reach a patch, does selection
generalise); they are SIMULATED and never a claim about real models.

Adding a world: write a class with the :class:`World` methods in a module of
this package and add one line to ``_BUILTIN`` (or call :func:`register_world`).

Example:
    >>> world = get_world("skills")
    >>> world.name
    'skills'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hyperteam.errors import ConfigError

if TYPE_CHECKING:
    from hyperteam.testing.sim._writing import Rolls

__all__ = ["Chance", "Turn", "World", "get_world", "register_world", "split_world", "world_names"]


@dataclass(frozen=True, slots=True)
class Turn:
    """What the brain knows about one request for a known problem.

    Attributes:
        model: the model name of the request (``sim:0.6?world=skills``).
        question: the known problem's text, as the suite stores it.
        gold: its normalised gold answer.
        texts: the text of every message, in order.
        agent_text: the last message after the problem statement: the input
            from earlier layers or peers, and who the agent is (role, instructions).
        candidates: normalised answers (``#### N``) found after the problem.
        accuracy: the model's base accuracy (``ACC`` of ``sim:ACC``).
    """

    model: str
    question: str
    gold: str
    texts: Sequence[str]
    agent_text: str
    candidates: Sequence[str]
    accuracy: float


@dataclass(frozen=True, slots=True)
class Chance:
    """A world's verdict on one request.

    Attributes:
        correct: the probability of a right answer when the agent solves on its own.
        follow: the probability of adopting the majority of the candidate answers
            in the prompt (when there are some); None keeps the brain's default.
        wrong_majority: when the agent follows and the majority is right, the
            probability that it overturns it anyway (a harmful verifier).
        draw: a uniform number in [0, 1) compared with ``correct`` instead of the
            brain's own draw; a world whose errors are correlated across agents
            passes the same draw for every agent of a problem. None: the brain draws.
    """

    correct: float
    follow: float | None = None
    wrong_majority: float = 0.0
    draw: float | None = None


@runtime_checkable
class World(Protocol):
    """The rules of a simulated world. Implementations are pure functions of their inputs."""

    name: str

    def chance(self, turn: Turn) -> Chance:
        """How likely the agent of ``turn`` is to answer right."""
        ...

    def optim_reply(self, kind: str, prompt: str, *, known: Mapping[str, str] | None, rolls: Rolls) -> str | None:
        """The world's reply to an optimizer prompt of ``kind``; None lets the plain simulator answer.

        ``known`` maps the question and gold of the known problem the prompt is about (if any).
        """
        ...


# name -> "module:attribute" of a zero-argument factory, imported on first use so that
# the plain simulator never loads a world's code.
_BUILTIN: dict[str, str] = {
    "skills": "hyperteam.testing.sim.worlds.skills:SkillsWorld",
    "topology": "hyperteam.testing.sim.worlds.topology:TopologyWorld",
}


@dataclass
class _Registry:
    factories: dict[str, Callable[[], World]] = field(default_factory=dict)
    made: dict[str, World] = field(default_factory=dict)


_REGISTRY = _Registry()


def register_world(name: str, factory: Callable[[], World]) -> None:
    """Makes ``factory()`` the world called ``name`` (replacing any earlier one)."""
    _REGISTRY.factories[name] = factory
    _REGISTRY.made.pop(name, None)


def world_names() -> list[str]:
    """The names of every known world, sorted."""
    return sorted(set(_BUILTIN) | set(_REGISTRY.factories))


def get_world(name: str) -> World:
    """Returns the world called ``name`` (one shared instance per process).

    Raises:
        ConfigError: no world has that name.
    """
    world = _REGISTRY.made.get(name)
    if world is not None:
        return world
    factory: Any = _REGISTRY.factories.get(name)
    if factory is None:
        target = _BUILTIN.get(name)
        if target is None:
            raise ConfigError(f"unknown simulated world {name!r}: expected one of {', '.join(world_names())}")
        module, _, attribute = target.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
    world = _REGISTRY.made[name] = factory()
    return world


def split_world(model: str) -> tuple[str, str | None]:
    """Splits ``sim:0.6?world=skills`` into ``("sim:0.6", "skills")``; no query gives ``(model, None)``.

    Raises:
        ConfigError: the query is not ``world=NAME``.
    """
    base, sep, query = model.partition("?")
    if not sep:
        return model, None
    key, eq, value = query.partition("=")
    if key.strip() != "world" or not eq or not value.strip():
        raise ConfigError(f"bad simulated model {model!r}: the only option is ?world=NAME, e.g. sim:0.6?world=skills")
    return base, value.strip()
