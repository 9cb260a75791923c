"""The SIMULATED skills world: prompts that address a problem's pitfalls help, verifiers hurt, the optimum is exact."""

from __future__ import annotations

import asyncio
import functools
import json

import pytest

import hyperteam as ht
from hyperteam.errors import ConfigError
from hyperteam.evals import datasets
from hyperteam.models import Runtime
from hyperteam.models.spec import resolve as resolve_spec
from hyperteam.testing.sim import SimBrain, SimModel
from hyperteam.testing.sim.worlds import Chance, Turn, get_world, register_world, skills, split_world, world_names

DEMO = datasets.load("demo", split="test")


def test_registry_names_worlds_and_refuses_unknown_ones():
    assert "skills" in world_names()
    assert get_world("skills") is get_world("skills")
    with pytest.raises(ConfigError, match=r"unknown simulated world .nope.*skills"):
        get_world("nope")
    assert split_world("sim:0.6?world=skills") == ("sim:0.6", "skills")
    assert split_world("sim:0.6") == ("sim:0.6", None)
    with pytest.raises(ConfigError, match=r"\?world=NAME"):
        split_world("sim:0.6?seed=3")


def test_spec_parses_world_and_keeps_plain_sim():
    resolve = functools.partial(resolve_spec, runtime=Runtime())
    model = resolve("sim:0.6?world=skills")
    assert isinstance(model, SimModel) and model.world == "skills" and model.accuracy == 0.6
    plain = resolve("sim:0.6")
    assert plain.world is None and plain.name == "sim:0.6"
    with pytest.raises(ConfigError, match="unknown simulated world"):
        resolve("sim:0.6?world=nowhere")
    with pytest.raises(ConfigError, match=r"\?world=NAME"):
        resolve("sim:0.6?worlds=skills")
    with pytest.raises(ConfigError, match="sim:ACCURACY"):
        resolve("sim:")


def test_world_plugs_in_by_name():
    class Always:
        name = "always"

        def chance(self, turn: Turn) -> Chance:
            return Chance(correct=1.0 if "oracle" in turn.agent_text else 0.0)

        def optim_reply(self, kind, prompt, *, known, rolls):
            return None

    register_world("always", Always)
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a", role="an oracle")])])
    blind = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="a", role="a guesser")])])
    brain = SimBrain(data_dir="/nonexistent")
    model = SimModel(0.5, brain=brain, world="always")
    for problem in DEMO[:5]:
        assert team.run_sync(problem.question, model=model).answer == problem.answer
        assert blind.run_sync(problem.question, model=model).answer != problem.answer


def test_pitfalls_are_deterministic_and_varied():
    found = {c for p in DEMO for c in skills.pitfalls(p.question)}
    assert len(skills.CATEGORIES) >= 5 and len(found) >= 4
    for p in DEMO:
        traps = skills.pitfalls(p.question)
        assert 1 <= len(traps) <= 3 and traps == skills.pitfalls(p.question)


def test_each_advice_addresses_exactly_its_own_category():
    for category in skills.CATEGORIES:
        assert skills.addressed(category.advice) == {category.name}


def test_chance_rises_with_addressed_pitfalls_and_falls_with_contradictions():
    q = "Each box holds 12 pens. Tom buys 3 boxes and gives away 5 pens. How many pens are left?"
    traps = skills.pitfalls(q)
    plain = skills.agent_chance(0.6, q, "You are a solver. Solve the problem.")
    helped = skills.agent_chance(0.6, q, "You are a solver. " + skills.optimal_instructions(traps))
    harmed = skills.agent_chance(0.6, q, "You are a solver. Answer quickly and skip the re-check.")
    assert plain == pytest.approx(0.6)
    assert helped == pytest.approx(0.9)
    assert harmed < plain


def test_verifier_layer_hurts_and_optimum_is_exact(monkeypatch):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, "/nonexistent")
    questions = [p.question for p in DEMO]
    best = skills.best_categories(questions, 0.6)
    team = ht.load_team("ann-gsm8k")
    optimal = ht.topologies.io.team_from_dict(skills.optimum_team(ht.topologies.io.team_to_dict(team), best))
    assert [layer.name for layer in optimal.layers] == ["solve"]

    async def accuracy(t):
        report = await ht.evaluate(t, DEMO, model="sim:0.6?world=skills", concurrency=8)
        return report["accuracy"]["strict"]

    untrained, optimum = asyncio.run(accuracy(team)), asyncio.run(accuracy(optimal))
    assert optimum == pytest.approx(skills.optimum_accuracy(questions, 0.6, best))
    assert optimum > untrained + 0.1


def test_served_model_names_choose_their_world_and_the_server_default_applies_otherwise():
    brain = SimBrain(data_dir="/nonexistent", world="skills")
    assert brain.world_for("sim-0.6").name == "skills"  # hyperteam sim --world skills
    assert SimBrain(data_dir="/nonexistent").world_for("sim-0.6?world=skills").name == "skills"
    assert SimBrain(data_dir="/nonexistent").world_for("sim-0.6") is None
    assert brain.accuracy_for("sim-0.6?world=skills") == 0.6
    with pytest.raises(ConfigError, match="unknown simulated world"):
        SimBrain(world="atlantis")


def _rolls(i: int):
    import hashlib

    from hyperteam.testing.sim._writing import Rolls

    return Rolls(hashlib.blake2b(i.to_bytes(8, "little")).digest())


def test_the_optimizer_side_of_the_world_is_honest_not_easy():
    world = get_world("skills")
    problems = [p for p in DEMO if skills.pitfalls(p.question)]
    right = total = 0
    for i in range(600):
        p = problems[i % len(problems)]
        prompt = "[[optim:evaluate]]\nLayer answers: solve: 1, 2, 3 -> 1 | verify: 1 -> 1\n"
        reply = world.optim_reply("evaluate", prompt, known={"question": p.question, "gold": p.answer}, rolls=_rolls(i))
        named = [c.name for c in skills.CATEGORIES if c.flaw in reply]
        assert len(named) == 1
        right += named[0] in skills.pitfalls(p.question)
        total += 1
    assert 0.45 <= right / total <= 0.70  # names the right pitfall at most 70% of the time

    percent = next(c for c in skills.CATEGORIES if c.name == "percent")
    layer = '{"name": "solve", "agents": [{"name": "a", "role": "solver", "instructions": "Solve it."}]}'
    prompt = (
        f"[[optim:update]]\n<layer>{layer}</layer>\nIts gradient (what should change):\n{percent.advice}\n---\n"
        '{"op": "set_role"}\n{"op": "set_instructions"}\n{"op": "set_fusion"}\n{"op": "add_layer"}\n'
    )
    followed = neutral_or_harmful = others = 0
    for i in range(600):
        reply = world.optim_reply("update", prompt, known=None, rolls=_rolls(i))
        ops = json.loads(reply.split("<patch>")[1].split("</patch>")[0])["ops"]
        text = json.dumps(ops)
        if reply.startswith("Following the gradient"):
            followed += 1
            assert percent.advice in text
            continue
        others += 1
        harmful = any(h in text for h in ("skip the re-check", "guess", "add_layer"))
        neutral = ops[0]["op"] == "set_role" or ops[0]["op"] == "set_fusion" or any(f in text for f in skills._FLUFF)
        neutral_or_harmful += harmful or neutral
    assert 0.45 <= followed / 600 <= 0.60  # follows the gradient at most 60% of the time
    assert neutral_or_harmful / others >= 1 / 3
