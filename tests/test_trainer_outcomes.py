"""What each training step reports when it cannot or need not patch: skipped, rejected, error; and its cost."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

import hyperteam as ht
from hyperteam.errors import ModelError
from hyperteam.models.types import ChatRequest, Usage
from hyperteam.testing import FunctionModel
from tests.test_optim import kind_of
from tests.test_trainer_verdicts import GOLD, TRAIN, VAL, _question


def _team_model(train_answer: Callable[[str], str]) -> FunctionModel:
    """Validation problems answered right; training problems answered by ``train_answer(prompt)``."""

    def reply(request: ChatRequest) -> str:
        question = _question(request)
        if question is not None:
            return f"#### {GOLD[question]}"
        return train_answer(request.messages[-1]["content"])

    return FunctionModel(reply)


def _optimizer(update: Callable[[], str], *, fail: str | None = None) -> FunctionModel:
    def reply(request: ChatRequest) -> str:
        kind = kind_of(request)
        if kind == fail:
            raise ModelError("the optimizer endpoint is down", kind="http_503", status=503)
        if kind == "update":
            return update()
        return "<feedback>wrong</feedback>" if kind == "evaluate" else "<gradient>be better</gradient>"

    return FunctionModel(reply)


def _patch() -> str:
    return json.dumps({"ops": [{"op": "set_instructions", "agent": "s", "value": "Be NEW."}]})


def _fit(
    team_model: FunctionModel, optimizer: FunctionModel, *, epochs: int = 1, seed: int = 0
) -> tuple[dict, ht.optim.Trainer]:
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", instructions="Solve.")])], name="one")
    trainer = ht.optim.Trainer(
        team, train=TRAIN, val=VAL, model=team_model, optimizer_model=optimizer,
        epochs=epochs, batch=len(TRAIN), val_batch=2, seed=seed,
    )  # fmt: skip
    return trainer.fit_sync(), trainer


def test_a_minibatch_answered_right_is_skipped_without_optimizer_calls(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO):
        report, trainer = _fit(_team_model(lambda prompt: "#### 1"), _optimizer(_patch), epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 1 ")]
    assert lines and lines[0].endswith(", optimizer 0")  # no failure note when nothing failed
    first, second = report["steps"]
    assert (first["step"], first["epoch"], second["step"], second["epoch"]) == (1, 1, 2, 2)
    for step in (first, second):
        assert step["outcome"] == "skipped"
        assert step["reason"] == "every answer of the minibatch was right: no gradient"
        assert {k: step["failed"][k] for k in ("problems", "failed", "failed_by_kind")} == {
            "problems": 2,
            "failed": 0,
            "failed_by_kind": {},
        }
        assert (step["train_score"], step["global_gradient"], step["gradients"]) == (1.0, "", {})
        assert step["patches"] == [] and step["optimizer_calls"] == []
        assert step["val"] == step["val_before"] == 1.0
        assert step["tokens"]["team"] > 0 and step["tokens"]["optimizer"] == 0
    # Each step's tokens are its own, not a running total.
    assert first["tokens"]["team"] == second["tokens"]["team"]
    assert trainer.optimizer.steps == 0  # no gradient: the optimizer never stepped


def test_a_minibatch_whose_only_wrong_answers_failed_is_skipped_saying_so(caplog: pytest.LogCaptureFixture):
    def answer(prompt: str) -> str:
        if "Training problem 0" in prompt:
            raise ModelError("busy", kind="http_503", status=503)
        return "#### 1"

    with caplog.at_level(logging.INFO):
        report, _ = _fit(_team_model(answer), _optimizer(_patch))
    [step] = report["steps"]
    assert step["outcome"] == "skipped"
    assert step["reason"] == "1 of 2 problems failed (http_503: 1); the others were right: no gradient"
    failed = {k: step["failed"][k] for k in ("problems", "failed", "failed_by_kind")}
    assert failed == {"problems": 2, "failed": 1, "failed_by_kind": {"http_503": 1}}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 1 ")]
    assert lines and lines[0].startswith("step 1 (epoch 1): skipped; validation 1.000; tokens team ")
    assert lines[0].endswith("; 1 of 2 problems failed (http_503: 1)")


def test_a_step_with_no_valid_patch_is_rejected_and_the_team_unchanged():
    report, trainer = _fit(_team_model(lambda prompt: "#### 0"), _optimizer(lambda: "no JSON here"))
    [step] = report["steps"]
    assert step["outcome"] == "rejected" and step["reason"] == "no valid patch"
    assert [p["status"] for p in step["patches"]] and all(p["status"] != "applied" for p in step["patches"])
    assert trainer.team.layers[0].agents[0].instructions == "Solve."
    assert step["train_score"] == 0.0 and step["global_gradient"] and step["gradients"]
    kinds = {c["kind"] for c in step["optimizer_calls"]}
    assert {"evaluate", "local_gradient", "update"} <= kinds  # the loss's calls and the updater's
    assert all(set(c) == {"kind", "layer", "tokens"} and c["tokens"] > 0 for c in step["optimizer_calls"])
    assert step["tokens"]["optimizer"] == sum(c["tokens"] for c in step["optimizer_calls"])
    moments = [m for ms in trainer.optimizer.history.values() for m in ms]
    assert moments and all(m.accepted is False for m in moments)  # a malformed patch is never "kept"


def test_an_optimizer_endpoint_failure_costs_the_step_not_the_run():
    report, trainer = _fit(_team_model(lambda prompt: "#### 0"), _optimizer(_patch, fail="evaluate"), epochs=2)
    assert [s["outcome"] for s in report["steps"]] == ["error", "error"]
    step = report["steps"][0]
    assert step["reason"] == "http_503: the optimizer endpoint is down" and step["patches"] == []
    assert trainer.team.layers[0].agents[0].instructions == "Solve."  # restored to the step's start
    assert step["val"] == step["val_before"]


def test_an_accepted_step_reports_its_calls_and_its_own_tokens():
    def answer(prompt: str) -> str:
        return "#### 1" if "Be NEW." in prompt else "#### 0"

    def team_reply(request: ChatRequest) -> str:
        question = _question(request)
        prompt = request.messages[-1]["content"]
        if question is not None:  # validation: even golds right before the patch, all right after
            right = "Be NEW." in prompt or int(GOLD[question]) % 2 == 0
            return f"#### {GOLD[question] if right else 0}"
        return answer(prompt)

    report, _ = _fit(FunctionModel(team_reply), _optimizer(_patch), epochs=2)
    first = report["steps"][0]
    assert first["outcome"] == "accepted" and first["val"] == 1.0 > first["val_before"]
    assert first["optimizer_calls"] and {c["layer"] for c in first["optimizer_calls"]} == {"optim", "solve"}
    assert first["tokens"]["optimizer"] == sum(c["tokens"] for c in first["optimizer_calls"])
    assert report["steps"][1]["outcome"] == "skipped"  # the patched team answers the minibatch right
    assert report["steps"][1]["optimizer_calls"] == []  # not the previous step's update calls again
    assert sum(s["tokens"]["optimizer"] for s in report["steps"]) == report["tokens"]["optimizer"]["total_tokens"]


def _improving_team() -> FunctionModel:
    def team_reply(request: ChatRequest) -> str:
        question = _question(request)
        prompt = request.messages[-1]["content"]
        if question is None:
            return "#### 1" if "Be NEW." in prompt else "#### 0"
        right = "Be NEW." in prompt or int(GOLD[question]) % 2 == 0
        return f"#### {GOLD[question] if right else 0}"

    return FunctionModel(team_reply)


def test_an_accepted_patch_is_recorded_in_the_history_the_pool_and_the_momentum():
    report, trainer = _fit(_improving_team(), _optimizer(_patch))
    [step] = report["steps"]
    if step["val_minibatch"]["before"] != 0:  # pick a seed whose minibatch change (1.0) differs from the full one
        report, trainer = next(
            (r, tr)
            for seed in range(1, 40)
            for r, tr in [_fit(_improving_team(), _optimizer(_patch), seed=seed)]
            if r["steps"][0]["val_minibatch"]["before"] == 0
        )
        [step] = report["steps"]
    assert step["reason"] == "validation improved on the minibatch and the full set"
    assert step["val_minibatch"]["n"] == 2 and step["val_minibatch"]["after"] == 2
    assert (step["val_before"], step["val_candidate"], step["val"]) == (0.5, 1.0, 1.0)
    [applied] = [p for p in step["patches"] if p["status"] == "applied"]
    assert trainer.team.history == [{"step": 1, "val": 1.0, "patches": [{"layer": "solve", "ops": applied["text"]}]}]
    [variant] = trainer.pool.variants["solve"]
    assert (variant.score, variant.step, variant.source) == (1.0, 1, "one")
    assert variant.layer["agents"][0]["instructions"] == "Be NEW."
    [moment] = [m for ms in trainer.optimizer.history.values() for m in ms]
    assert (moment.outcome, moment.val_change) == ("kept", 0.5)  # the full set's change: 1.0 - 0.5


def test_a_patch_reverted_on_the_minibatch_records_the_minibatch_change():
    def worse(request: ChatRequest) -> str:
        question = _question(request)
        prompt = request.messages[-1]["content"]
        if question is None:
            return "#### 0"
        right = "Be NEW." not in prompt and int(GOLD[question]) % 2 == 0  # the patch breaks every answer
        return f"#### {GOLD[question] if right else 0}"

    report, trainer = _fit(FunctionModel(worse), _optimizer(_patch))
    [step] = report["steps"]
    mb = step["val_minibatch"]
    assert step["outcome"] == "reverted" and mb["after"] == 0 and mb["n"] == 2
    [moment] = [m for ms in trainer.optimizer.history.values() for m in ms]
    assert (moment.outcome, moment.val_change) == ("reverted", -mb["before"] / 2)
    assert (trainer.team.history == [] and len(trainer.pool) == 0) or "solve" not in trainer.pool.variants


def test_the_same_seed_checks_the_same_validation_minibatch():
    def asked(seed: int) -> list[str]:
        model = _improving_team()
        team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s", instructions="Solve.")])], name="one")
        ht.optim.Trainer(
            team, train=TRAIN, val=VAL, model=model, optimizer_model=_optimizer(_patch),
            epochs=1, batch=len(TRAIN), val_batch=2, seed=seed,
        ).fit_sync()  # fmt: skip
        questions = [_question(r) for r in model.requests]
        return [q for q in questions[len(VAL) :] if q is not None][:2]  # the first minibatch after the initial check

    assert asked(3) == asked(3) == asked(3)


# -- the optimizer's checkpointed state ------------------------------------------------------------


def test_the_optimizer_state_survives_a_checkpoint_exactly():
    _, trainer = _fit(_improving_team(), _optimizer(_patch))
    state = json.loads(json.dumps(trainer.optimizer.state_dict()))
    assert state["steps"] == 1 and state["usage"]["calls"] > 0
    assert [m["outcome"] for m in state["history"]["solve"]] == ["kept"]
    assert [r["accepted"] for r in state["records"] if r["status"] == "applied"] == [True]
    fresh = ht.optim.TextualGradientDescent(trainer.team, momentum=trainer.optimizer.momentum)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert fresh.usage == trainer.optimizer.usage and fresh.history["solve"].maxlen == trainer.optimizer.momentum


@pytest.mark.parametrize(("accepted", "outcome"), [(True, "kept"), (False, "reverted"), (None, None)])
def test_a_checkpoint_from_before_momentum_outcomes_still_loads(accepted: bool | None, outcome: str | None):
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    old = {
        "steps": 4,
        "history": {"solve": [{"step": 4, "gradient": "be careful", "patch": "p", "accepted": accepted}]},
        "records": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "calls": 2, "latency_s": 0.5},
    }
    optimizer = ht.optim.TextualGradientDescent(team, momentum=2)
    optimizer.load_state_dict(old)
    [moment] = optimizer.history["solve"]
    assert (moment.step, moment.gradient, moment.patch, moment.outcome) == (4, "be careful", "p", outcome)
    assert moment.accepted is (None if accepted is None else accepted)
    assert optimizer.steps == 4 and optimizer.honours_schema == {}
    assert (optimizer.usage.prompt_tokens, optimizer.usage.completion_tokens, optimizer.usage.calls) == (10, 5, 2)
    assert optimizer.usage.latency_s == 0.5 and optimizer.history["solve"].maxlen == 2


def test_without_momentum_the_history_is_unbounded():
    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    optimizer = ht.optim.TextualGradientDescent(team, momentum=0)
    moments = [{"step": i, "gradient": "g", "patch": "", "outcome": "kept", "val_change": 0.1} for i in range(5)]
    optimizer.load_state_dict({"steps": 5, "history": {"solve": moments}, "records": [], "usage": Usage().to_dict()})
    assert len(optimizer.history["solve"]) == 5 and optimizer.history["solve"].maxlen is None
