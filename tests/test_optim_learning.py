"""Textual backprop that reports honestly: held-out test, loud failures, structural patches, momentum, tails."""

from __future__ import annotations

import asyncio
import json

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.evals.datasets import Problem
from hyperteam.models.types import ChatRequest
from hyperteam.optim import TextualGradientDescent
from hyperteam.optim.patch import Patch, apply_patch, parse_patch
from hyperteam.testing import FunctionModel
from tests.test_optim import kind_of, two_layer_team

GOLD = {f"Problem {i}: how many?": str(10 + i) for i in range(12)}  # odd golds start out wrong


def _team_model(request: ChatRequest) -> str:
    prompt = request.messages[-1]["content"]
    question = next((q for q in GOLD if q in prompt), None)
    if question is None:
        return "#### 0"
    right = "GOOD" in prompt or int(GOLD[question]) % 2 == 0
    return f"#### {GOLD[question] if right else 0}"


def _optimizer(request: ChatRequest) -> str:
    kind = kind_of(request)
    if kind == "update":
        return json.dumps({"ops": [{"op": "set_instructions", "agent": "s", "value": "Be GOOD."}]})
    return "<feedback>wrong</feedback>" if kind == "evaluate" else "<gradient>be better</gradient>"


def _problems() -> tuple[list[Problem], list[Problem], list[Problem]]:
    items = list(GOLD.items())
    val = [Problem(f"v{i}", q, g) for i, (q, g) in enumerate(items[:4])]
    test = [Problem(f"x{i}", q, g) for i, (q, g) in enumerate(items[4:])]
    train = [Problem(f"t{i}", f"Training problem {i}: how many?", "1") for i in range(4)]
    return train, val, test


def test_the_report_compares_untrained_and_trained_on_held_out_test_problems(tmp_path):
    train, val, test = _problems()
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    trainer = ht.optim.Trainer(
        team, train=train, val=val, test=test, model=FunctionModel(_team_model),
        optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4, val_batch=4,
    )  # fmt: skip
    report = trainer.fit_sync()
    t = report["test"]
    assert (t["n"], t["untrained"], t["trained"]) == (8, 0.5, 1.0)  # the four odd-gold problems flipped
    assert t["only_trained_right"] == 4 and t["only_untrained_right"] == 0
    assert t["p_value"] == pytest.approx(0.125)  # exact McNemar: 2 * 0.5**4
    assert t["significant"] is False and t["gap"] == pytest.approx(0.0)
    _, html = ht.optim.write_report(report, tmp_path)
    page = html.read_text()
    assert "held-out test" in page and "is not significant (p = 0.125)" in page
    assert json.loads((tmp_path / "train_report.json").read_text())["test"]["p_value"] == pytest.approx(0.125)


def test_test_problems_must_be_held_out():
    train, val, _ = _problems()
    with pytest.raises(ht.ConfigError, match="test problems must be held out"):
        ht.optim.Trainer(two_layer_team(), train=train, val=val, test=val[:1], model=FunctionModel(_team_model))


def _failing(fail: set[str]) -> FunctionModel:
    def fn(request: ChatRequest) -> str:
        prompt = request.messages[-1]["content"]
        if any(marker in prompt for marker in fail):
            raise ModelError("read timed out after 30 s", kind="timeout")
        return "#### 1"

    return FunctionModel(fn)


def test_a_step_whose_problems_failed_says_how_many_and_why_never_all_right():
    train = [Problem(f"t{i}", f"Training problem {i}: how many?", "1") for i in range(4)]
    val = [Problem("v0", "Problem 0: how many?", "1")]
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])])
    lines: list[str] = []
    trainer = ht.optim.Trainer(
        team, train=train, val=val, model=_failing({"Training problem 1:"}),
        optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4, log=lines.append,
    )  # fmt: skip
    report = trainer.fit_sync()
    step = report["steps"][0]
    assert step["failed"]["failed"] == 1 and step["failed"]["failed_by_kind"] == {"timeout": 1}
    assert step["reason"] == "1 of 4 problems failed (timeout: 1); the others were right: no gradient"
    assert "1 of 4 problems failed (timeout: 1)" in lines[1]
    assert report["failures"]["failed"] == 1 and report["failures"]["steps_with_failures"] == 1


def test_training_stops_with_a_clear_error_when_most_of_a_minibatch_fails(tmp_path):
    train = [Problem(f"t{i}", f"Training problem {i}: how many?", "1") for i in range(4)]
    val = [Problem("v0", "Problem 0: how many?", "1")]
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])])
    trainer = ht.optim.Trainer(
        team, train=train, val=val, model=_failing({"Training problem"}), optimizer_model=FunctionModel(_optimizer),
        epochs=1, batch=4, checkpoint=tmp_path / "ckpt.json",
    )  # fmt: skip
    with pytest.raises(
        ModelError, match=r"4 of 4 problems failed \(timeout: 4\) in step 1's minibatch: training stops"
    ):
        trainer.fit_sync()
    assert json.loads((tmp_path / "ckpt.json").read_text())["stopped"].startswith("failed: 4 of 4")


def _step(reply: str | list[str], team: ht.LayeredTeam | None = None, **kwargs) -> tuple[ht.LayeredTeam, list, list]:
    team = team or two_layer_team()
    for _, p in team.named_parameters():
        if p.layer == "check":
            p.grad = "the checker overturns right answers"
    replies = iter([reply] if isinstance(reply, str) else reply)
    model = FunctionModel(lambda r: next(replies))
    opt = TextualGradientDescent(team, model=model, structured=None, **kwargs)
    records = asyncio.run(opt.step())
    return team, records, model.requests


def test_a_patch_can_remove_add_and_move_layers():
    team, records, _ = _step('<patch>{"ops": [{"op": "remove_layer"}]}</patch>')
    assert records[0].status == "applied" and [layer.name for layer in team.layers] == ["solve"]

    new = {"name": "review", "agents": [{"name": "r", "role": "a reviewer"}], "fusion": "majority_vote"}
    team, records, _ = _step(json.dumps({"ops": [{"op": "add_layer", "layer": new}]}))
    assert [layer.name for layer in team.layers] == ["solve", "check", "review"]

    team, records, _ = _step('{"ops": [{"op": "move_layer", "position": 1}]}')
    assert [layer.name for layer in team.layers] == ["check", "solve"]


def test_structural_patches_that_break_the_team_are_rejected_with_their_reason():
    spec = two_layer_team().model_dump(mode="python")
    only = {**spec, "layers": spec["layers"][:1]}
    with pytest.raises(ht.ConfigError, match="cannot remove 'solve', the team's only layer"):
        apply_patch(only, "solve", parse_patch('{"ops": [{"op": "remove_layer"}]}'))
    with pytest.raises(ht.ConfigError, match="position 5 is past the team's 2 layers"):
        apply_patch(spec, "check", parse_patch('{"ops": [{"op": "move_layer", "position": 5}]}'))
    dup = {"op": "add_layer", "layer": {"name": "solve", "agents": [{"name": "x"}]}}
    with pytest.raises(ht.ConfigError, match="already has a layer 'solve'"):
        apply_patch(spec, "check", Patch.model_validate({"ops": [dup]}))


def test_prompt_only_training_refuses_structural_ops_and_asks_again():
    bad = '{"ops": [{"op": "remove_layer"}]}'
    good = '{"ops": [{"op": "set_role", "agent": "c", "value": "a calm checker"}]}'
    team, records, requests = _step([bad, good], ops=("set_role", "set_instructions"))
    assert records[0].status == "applied" and records[0].retried is True
    assert team.layers[1].agents[0].role == "a calm checker"
    assert '"op": "remove_layer"' not in requests[0].messages[-1]["content"]  # not offered
    assert "op 0 (remove_layer) not allowed" in requests[1].messages[-1]["content"]


def test_momentum_carries_the_patch_its_outcome_and_the_validation_change():
    team = two_layer_team()
    good = '{"ops": [{"op": "set_role", "agent": "c", "value": "a calm checker"}]}'
    replies = iter([good, "no idea", "still no idea"])
    model = FunctionModel(lambda r: next(replies))
    opt = TextualGradientDescent(team, model=model, structured=None)
    for _, p in team.named_parameters():
        p.grad = "fix the checker" if p.layer == "check" else None
    asyncio.run(opt.step())
    opt.record_outcome(False, val_change=-0.05)
    for _, p in team.named_parameters():
        p.grad = "fix the checker again" if p.layer == "check" else None
    asyncio.run(opt.step())
    first, second = opt.history["check"]
    assert (first.outcome, first.val_change) == ("reverted", -0.05)
    assert first.patch == '[{"op": "set_role", "agent": "c", "value": "a calm checker"}]'
    assert second.outcome == "malformed" and "no <patch>" in second.patch
    prompt = model.requests[1].messages[-1]["content"]
    assert "step 1, reverted (validation -0.050)" in prompt and '"value": "a calm checker"' in prompt
    state = opt.state_dict()
    again = TextualGradientDescent(two_layer_team(), model=model)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert [m.outcome for m in again.history["check"]] == ["reverted", "malformed"]


def test_json_schema_is_probed_once_per_model_and_remembered():
    patch = '{"ops": [{"op": "set_role", "agent": "c", "value": "a calm checker"}]}'

    def run_twice(reply: str | None, *, refuse: bool = False) -> list[ChatRequest]:
        def fn(request: ChatRequest) -> str:
            if refuse and request.json_schema is not None:
                raise ModelError("400 unknown field structured_outputs", kind="http_400", status=400)
            return reply if reply is not None else f"Here you go:\n<patch>{patch}</patch>"

        model = FunctionModel(fn)
        team = two_layer_team()
        opt = TextualGradientDescent(team, model=model)  # structured="auto"
        for _ in range(2):
            for _, p in team.named_parameters():
                p.grad = "fix the checker" if p.layer == "check" else None
            records = asyncio.run(opt.step())
            assert records[0].status == "applied"
        return model.requests

    honoured = run_twice(patch)
    assert [r.json_schema is not None for r in honoured] == [True, True]
    ignored = run_twice(None)  # prose around the patch: the schema was not honoured
    assert [r.json_schema is not None for r in ignored] == [True, False]
    refused = run_twice(None, refuse=True)
    assert [r.json_schema is not None for r in refused] == [True, False, False]


def test_the_evaluator_and_gradients_see_the_end_of_long_reasoning():
    long = "Let me think. " + "Some careful but irrelevant words. " * 40 + "So 7 * 6 = 40 by mistake.\n#### 40"
    model = FunctionModel(lambda r: long if kind_of(r) == "agent" else "<gradient>g</gradient>")
    team = two_layer_team()
    result = team.run_sync("What is 7 * 6?", model=model)
    examples = [ht.optim.Example("What is 7 * 6?", "42", result)]
    loss = asyncio.run(ht.optim.EvaluatorLoss(model)(team, examples))
    asyncio.run(loss.backward())
    prompts = {kind_of(r): r.messages[-1]["content"] for r in model.requests if kind_of(r) != "agent"}
    assert "7 * 6 = 40 by mistake" in prompts["evaluate"]
    assert "7 * 6 = 40 by mistake" in prompts["global_gradient"]
    assert "7 * 6 = 40 by mistake" in prompts["local_gradient"]
    assert len(prompts["local_gradient"]) < 5000  # bounded: tails, not whole outputs


@pytest.mark.parametrize(
    ("reply", "choice"),
    [
        ("Choice: 2", "llm_select"),
        ("Choice: 2 (llm_select)", "llm_select"),
        ("Choice: [2]", "llm_select"),
        ("Choice: llm_select", "llm_select"),
        ("Choice: option 2", "llm_select"),
        ("Choice: 1 (llm_select)", "majority_vote"),  # number and name disagree: fall back
        ("I pick the second.", "majority_vote"),
    ],
)
def test_router_choices_are_read_as_open_models_write_them(reply, choice):
    def model(request: ChatRequest) -> str:
        if kind_of(request) == "route":
            return f"Reason: fine.\n{reply}"
        return "Selected: 1" if "Selected" in request.messages[-1]["content"] else "#### 4"

    layer = ht.Layer("solve", agents=[ht.Agent(name="a"), ht.Agent(name="b")], candidates=["llm_select"], router="llm")
    result = ht.LayeredTeam([layer]).run_sync("2+2?", model=FunctionModel(model))
    assert result.trace[0].detail["choice"] == choice
    assert result.trace[0].detail["fallback"] is (choice == "majority_vote")


def test_router_fallbacks_are_counted_in_the_train_report():
    train, val, _ = _problems()
    layer = ht.Layer("solve", agents=[ht.Agent(name="s")], candidates=["llm_select"], router="llm")
    team = ht.LayeredTeam([layer])

    def team_model(request: ChatRequest) -> str:
        return "Reason: unsure" if kind_of(request) == "route" else _team_model(request)

    report = ht.optim.Trainer(
        team, train=train, val=val, model=FunctionModel(team_model), optimizer_model=FunctionModel(_optimizer),
        epochs=1, batch=4,
    ).fit_sync()  # fmt: skip
    assert report["failures"]["fallbacks"]["router"] >= len(train) + len(val)


def test_empty_replies_are_counted_per_agent_in_the_train_report():
    train, val, _ = _problems()

    def team_model(request: ChatRequest) -> str:
        return "" if "Training problem 0" in request.messages[-1]["content"] else _team_model(request)

    report = ht.optim.Trainer(
        ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])]), train=train, val=val,
        model=FunctionModel(team_model), optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4,
    ).fit_sync()  # fmt: skip
    empty_once = {"empty": 1, "truncated": 0, "fallback": 0}
    assert report["failures"]["replies_per_agent"] == {"s": empty_once, "solve.vote": empty_once}  # the vote had none


def test_the_trained_team_is_compared_with_self_consistency_at_its_tokens(tmp_path):
    train, val, test = _problems()
    role = "a meticulous and exceptionally careful senior math tutor who double-checks every arithmetic step"
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", role=role)])], name="one")
    trainer = ht.optim.Trainer(
        team, train=train, val=val, test=test, model=FunctionModel(_team_model),
        optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4, val_batch=4, baseline="self-consistency",
    )  # fmt: skip
    report = trainer.fit_sync()
    t = report["test"]
    assert t["trained"] == 1.0 and t["trained_tokens"] > t["untrained_tokens"] > 0  # "Be GOOD." costs tokens
    sc = t["self_consistency"]
    # Its solver's prompt has no "GOOD": right on the four even golds only, with more samples than one.
    # The long role's prompt tokens buy self-consistency more samples than one.
    assert sc["accuracy"] == 0.5 and sc["diff"] == -0.5 and sc["samples"] == 3 and sc["p_value"] == 0.125
    assert (sc["tokens"], sc["token_ratio"], sc["equal_tokens"]) == (t["trained_tokens"], 1.0, True)
    # The test's runs (8 problems: untrained, trained, the pilot's 8 and self-consistency) are not training's.
    tokens = report["tokens"]
    assert tokens["test"]["calls"] == 8 + 8 + 8 + 8 and tokens["team"]["calls"] == 4 + 4 + 4  # val, train, val
    assert tokens["total"] == sum(tokens[k]["total_tokens"] for k in ("team", "optimizer", "test"))
    _, html = ht.optim.write_report(report, tmp_path)
    assert f"self-consistency x{sc['samples']} at " in html.read_text()
    with pytest.raises(ht.ConfigError, match="--test N"):
        ht.optim.Trainer(team, train=train, val=val, model="sim:0.7", baseline="self-consistency")


def test_a_failing_baseline_fails_alone(tmp_path):
    train, val, test = _problems()

    def team_model(request: ChatRequest) -> str:
        if request.n > 1 or "Solve the problem." in str(request.messages):  # self-consistency's solver
            raise ModelError("the server refused", kind="http_500")
        return _team_model(request)

    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    trainer = ht.optim.Trainer(
        team, train=train, val=val, test=test, model=FunctionModel(team_model),
        optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4, val_batch=4, baseline="self-consistency",
    )  # fmt: skip
    report = trainer.fit_sync()
    assert report["stopped"] == "done" and report["test"]["trained"] == 1.0  # training and its test stand
    assert "the test of self-consistency" in report["test"]["self_consistency"]["error"]
    _, html = ht.optim.write_report(report, tmp_path)
    assert "failed" in html.read_text()


def test_a_test_that_fails_leaves_the_checkpoint_with_trainings_tokens_only(tmp_path):
    train, val, test = _problems()
    tested = {p.question for p in test}

    def team_model(request: ChatRequest) -> str:
        if any(q in str(request.messages) for q in tested):
            raise ModelError("the server refused", kind="http_500")
        return _team_model(request)

    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    checkpoint = tmp_path / "ckpt.json"
    trainer = ht.optim.Trainer(
        team, train=train, val=val, test=test, model=FunctionModel(team_model),
        optimizer_model=FunctionModel(_optimizer), epochs=1, batch=4, val_batch=4, checkpoint=checkpoint,
    )  # fmt: skip
    with pytest.raises(ModelError, match="the test of the untrained team"):
        trainer.fit_sync()
    assert json.loads(checkpoint.read_text())["team_usage"]["calls"] == 4 + 4 + 4  # val, train, val: no test call
