"""Textual backprop with test doubles: parameters, gradients, patches, routing, refinement, pool."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

import hyperteam as ht
from hyperteam.models.types import ChatRequest
from hyperteam.optim import EvaluatorLoss, Example, LayerPool, TextualGradientDescent, assemble
from hyperteam.optim.cost import estimate
from hyperteam.testing import FunctionModel, ScriptedModel

MARKER = re.compile(r"\[\[optim:(\w+)\]\]")


def kind_of(request: ChatRequest) -> str:
    found = MARKER.search(request.messages[-1]["content"])
    return found.group(1) if found else "agent"


def two_layer_team() -> ht.LayeredTeam:
    return ht.LayeredTeam(
        [
            ht.Layer("solve", agents=[ht.Agent(name="a", role="solver"), ht.Agent(name="b", role="solver")]),
            ht.Layer("check", agents=[ht.Agent(name="c", role="checker", instructions="Check it.")]),
        ],
        name="tiny",
    )


def run_all(team: ht.LayeredTeam, model: FunctionModel, questions: list[str]) -> list[ht.TeamResult]:
    async def go() -> list[ht.TeamResult]:
        return [await team.run(q, model=model) for q in questions]

    return asyncio.run(go())


# --- parameters ---------------------------------------------------------------


def test_named_parameters_cover_roles_instructions_and_aggregators_with_descriptions():
    team = two_layer_team()
    params = dict(team.named_parameters())
    assert list(params) == [
        "layers.solve.agents.a.role", "layers.solve.agents.a.instructions",
        "layers.solve.agents.b.role", "layers.solve.agents.b.instructions",
        "layers.solve.fusion", "layers.solve.candidates",
        "layers.check.agents.c.role", "layers.check.agents.c.instructions",
        "layers.check.fusion", "layers.check.candidates",
    ]  # fmt: skip
    assert "aggregation function" in params["layers.solve.fusion"].role_description
    params["layers.check.agents.c.role"].value = "a strict verifier"
    assert team.layers[1].agents[0].role == "a strict verifier"


def test_state_dict_round_trips_exactly_through_json_and_a_team_file(tmp_path):
    trained = two_layer_team()
    trained.load_state_dict(
        {
            **trained.state_dict(),
            "layers.solve.agents.a.instructions": "Write the equations.\nThen solve them — carefully.",
            "layers.solve.fusion": {"name": "debate", "max_rounds": 2},
            "layers.check.candidates": ["llm_select", {"name": "judge", "max_score": 5}],
        }
    )
    state = trained.state_dict()
    fresh = two_layer_team()
    fresh.load_state_dict(json.loads(json.dumps(state)))
    assert fresh.state_dict() == state
    trained.history = [{"step": 3, "val": 0.75, "patches": []}]
    trained.save(tmp_path / "t.yaml")
    loaded = ht.load_team(tmp_path / "t.yaml")
    assert loaded.state_dict() == state
    assert loaded.history == [{"step": 3, "val": 0.75, "patches": []}]


def test_load_state_dict_is_all_or_nothing():
    team = two_layer_team()
    before = team.state_dict()
    bad = {**before, "layers.solve.agents.a.role": "changed", "layers.check.fusion": "no_such_fusion"}
    with pytest.raises(ht.ConfigError, match=r"layers\.check\.fusion: unknown fusion 'no_such_fusion'"):
        team.load_state_dict(bad)
    assert team.state_dict() == before
    with pytest.raises(ht.ConfigError, match=r"unknown: layers\.x\.fusion"):
        team.load_state_dict({**before, "layers.x.fusion": "majority_vote"})


# --- loss and backward --------------------------------------------------------


def wrong_team_model() -> FunctionModel:
    return FunctionModel(lambda r: "I think so.\n#### 5")


def test_a_gradient_reaches_every_layer_last_layer_first():
    team = two_layer_team()
    seen: list[str] = []

    def optimizer(request: ChatRequest) -> str:
        kind, prompt = kind_of(request), request.messages[-1]["content"]
        seen.append(kind if kind != "local_gradient" else "local:" + prompt.split("Layer: ")[1].split(" ")[0])
        if kind == "evaluate":
            return "<feedback>The answer should be 7, not 5.</feedback>"
        if kind == "global_gradient":
            return "<gradient>Both layers accept 5 without checking.</gradient>"
        layer = prompt.split("Layer: ")[1].split(" ")[0]
        upper = "from-check" in prompt
        return f"<gradient>{layer} must change (saw upper gradient: {upper}) from-{layer}</gradient>"

    questions = ["q1?", "q2?"]
    results = run_all(team, wrong_team_model(), questions)
    examples = [Example(q, "7", r) for q, r in zip(questions, results, strict=True)]

    async def go():
        loss = await EvaluatorLoss(FunctionModel(optimizer))(team, examples)
        return loss, await loss.backward()

    loss, grads = asyncio.run(go())
    assert loss.score == 0.0 and loss.feedback == ["The answer should be 7, not 5."] * 2
    assert seen == ["evaluate", "evaluate", "global_gradient", "local:check", "local:solve"]
    assert grads.layers["solve"].startswith("solve must change (saw upper gradient: True)")
    for name, param in team.named_parameters():
        assert param.grad == grads.layers[param.layer], name
    team.zero_grad()
    assert all(p.grad is None for _, p in team.named_parameters())


def test_gradients_stay_under_their_bound_over_50_steps():
    team = two_layer_team()
    long = " ".join(["the verifier should re-derive every quantity"] * 200)  # ~9,000 characters
    prompt_sizes: list[int] = []

    def optimizer(request: ChatRequest) -> str:
        kind = kind_of(request)
        prompt_sizes.append(len(request.messages[-1]["content"]))
        if kind == "evaluate":
            return "<feedback>" + long + "</feedback>"
        if kind == "summarize":
            return "<gradient>" + long[:3000] + "</gradient>"  # a summary that is still too long
        if kind == "update":
            return '<patch>{"ops": [{"op": "set_instructions", "agent": "c", "value": "Check it again."}]}</patch>'
        return "<gradient>" + long + "</gradient>"

    opt_model = FunctionModel(optimizer)
    opt = TextualGradientDescent(team, model=opt_model, momentum=3)
    loss_fn = EvaluatorLoss(opt_model, max_chars=500)

    async def go():
        for _ in range(50):
            results = [await team.run("q?", model=wrong_team_model())]
            loss = await loss_fn(team, [Example("q?", "7", results[0])])
            grads = await loss.backward()
            assert len(grads.global_) <= 500 and all(len(g) <= 500 for g in grads.layers.values())
            assert all(len(p.grad) <= 500 for _, p in team.named_parameters())
            await opt.step()
            opt.zero_grad()
            opt.record_outcome(False)

    asyncio.run(go())
    assert max(prompt_sizes[-20:]) <= max(prompt_sizes[:40])  # nothing accumulates from step to step
    assert all(len(m) <= 3 for m in opt.history.values())


# --- patches ------------------------------------------------------------------


def step_with_patch(reply: str, *, retry: str | None = None) -> tuple[ht.LayeredTeam, list]:
    team = two_layer_team()
    team.named_parameters()[0][1].grad = "change it"  # as backward() leaves it, for layer "solve"
    # one call: the updater's, for the one layer with a gradient; a second when the first cannot be used
    with ScriptedModel([reply] if retry is None else [reply, retry]) as updater:
        records = asyncio.run(TextualGradientDescent(team, model=updater).step())
    if retry is not None:
        assert (
            "Your previous reply could not be used: " + records[0].reason in updater.requests[1].messages[-1]["content"]
        )
    return team, records


def test_a_valid_patch_is_applied():
    ops = [{"op": "add_agent", "agent": {"name": "d", "role": "estimator"}}]
    ops.append({"op": "set_fusion", "value": "llm_select"})
    team, records = step_with_patch(f"<patch>{json.dumps({'ops': ops})}</patch>")
    assert [r.status for r in records] == ["applied"]
    assert [a.name for a in team.layers[0].agents] == ["a", "b", "d"]
    assert team.layers[0].fusion == "llm_select"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I would change the role.", "no <patch>...</patch> block"),
        ('<patch>{"ops": [{"op": "set_role", "agent": "a"</patch>', "not valid JSON"),
        ('<patch>{"ops": [{"op": "rename", "agent": "a"}]}</patch>', "does not fit the schema"),
        (
            '<patch>{"ops": [{"op": "set_role", "agent": "a", "value": "new"}, {"op": "remove_agent", "agent": "z"}]}'
            "</patch>",
            "op 1 (remove_agent): layer 'solve' has no agent 'z'",
        ),
        (
            '<patch>{"ops": [{"op": "remove_agent", "agent": "a"}, {"op": "remove_agent", "agent": "b"}]}</patch>',
            "layers[0].agents: List should have at least 1 item",
        ),
    ],
)
def test_a_malformed_patch_is_rejected_with_its_reason_and_never_half_applied(reply, reason):
    before = two_layer_team().state_dict()
    team, records = step_with_patch(reply, retry=reply)  # the same mistake twice: rejected after one retry
    assert [r.status for r in records] == ["rejected"]
    assert reason in records[0].reason
    assert team.state_dict() == before


def test_structured_output_is_requested_only_when_asked_and_a_bare_json_patch_parses():
    reply = '{"ops": [{"op": "set_role", "agent": "a", "value": "an estimator"}]}'
    for structured, expected in ((None, {}), ("json_object", {"response_format": {"type": "json_object"}})):
        team = two_layer_team()
        team.named_parameters()[0][1].grad = "change it"
        model = FunctionModel(lambda r: reply)
        records = asyncio.run(TextualGradientDescent(team, model=model, structured=structured).step())
        assert records[0].status == "applied" and team.layers[0].agents[0].role == "an estimator"
        assert model.requests[0].extra == expected
        assert model.requests[0].json_schema is None


def test_a_json_schema_patch_request_goes_to_vllm_as_structured_outputs():
    from hyperteam.models.endpoint import EndpointModel
    from hyperteam.optim.patch import Patch

    reply = '{"ops": [{"op": "set_fusion", "value": "llm_select"}]}'
    team = two_layer_team()
    team.named_parameters()[0][1].grad = "change it"
    model = FunctionModel(lambda r: reply)
    records = asyncio.run(TextualGradientDescent(team, model=model, structured="json_schema").step())
    assert records[0].status == "applied" and team.layers[0].fusion == "llm_select"
    request = model.requests[0]
    assert request.json_schema == Patch.model_json_schema()
    body = json.loads(EndpointModel.body(_BodyOnly(), request))  # type: ignore[arg-type]
    assert body["structured_outputs"] == {"json": Patch.model_json_schema()} and "guided_json" not in body


class _BodyOnly:
    """Enough of an EndpointModel to build a request body."""

    model, structured = "served", "vllm"


# --- trainer: keep what helps, revert what hurts -----------------------------


def test_trainer_keeps_a_patch_that_raises_validation_and_reverts_one_that_lowers_it(tmp_path):
    from hyperteam.evals.datasets import Problem

    gold = {f"Problem {i}: how many?": str(10 + i) for i in range(4)}  # odd golds start out wrong
    val = [Problem(f"v{i}", q, g) for i, (q, g) in enumerate(gold.items())]
    train = [Problem(f"t{i}", f"Training problem {i}: how many?", "1") for i in range(4)]  # always wrong

    def team_model(request: ChatRequest) -> str:
        prompt = request.messages[-1]["content"]
        question = next((q for q in gold if q in prompt), None)
        if question is None:
            return "#### 0"
        right = "GOOD" in prompt or ("BAD" not in prompt and int(gold[question]) % 2 == 0)
        return f"#### {gold[question] if right else 0}"

    patches = iter(["Be GOOD.", "Be BAD."])

    def optimizer(request: ChatRequest) -> str:
        kind = kind_of(request)
        if kind == "update":
            return json.dumps({"ops": [{"op": "set_instructions", "agent": "s", "value": next(patches)}]})
        return "<feedback>wrong</feedback>" if kind == "evaluate" else "<gradient>be better</gradient>"

    team = ht.LayeredTeam([ht.Layer("solve", agents=[ht.Agent(name="s")])], name="one")
    trainer = ht.optim.Trainer(
        team, train=train, val=val, model=FunctionModel(team_model), optimizer_model=FunctionModel(optimizer),
        epochs=1, batch=2, val_batch=4,
    )  # fmt: skip
    report = trainer.fit_sync()
    assert [s["outcome"] for s in report["steps"]] == ["accepted", "reverted"]
    assert report["curve"] == [
        {"step": 0, "val": 0.5, "accepted": True},
        {"step": 1, "val": 1.0, "accepted": True},
        {"step": 2, "val": 1.0, "accepted": False},
    ]
    assert team.layers[0].agents[0].instructions == "Be GOOD."
    assert [p["text"] for p in report["patches"]["reverted"]] == [
        '[{"op": "set_instructions", "agent": "s", "value": "Be BAD."}]'
    ]
    assert team.history[0]["val"] == 1.0
    assert [m.accepted for m in trainer.optimizer.history["solve"]] == [True, False]
    assert report["tokens"]["optimizer"]["calls"] > 0 and report["tokens"]["team"]["calls"] > 0
    json_path, html_path = ht.optim.write_report(report, tmp_path)
    page = html_path.read_text()
    assert "Learning curve" in page and "Be BAD." in page and "<script" not in page
    assert json.loads(json_path.read_text())["final_val"] == 1.0


# --- forward routing and test-time refinement --------------------------------


def test_the_router_picks_an_aggregator_per_task_and_says_why():
    def model(request: ChatRequest) -> str:
        if kind_of(request) == "route":
            return "Reason: the answers disagree, so pick the most consistent.\nChoice: 2"
        if "Selected" in request.messages[-1]["content"]:
            return "Selected: 1"
        return "#### 4"

    layer = ht.Layer("solve", agents=[ht.Agent(name="a"), ht.Agent(name="b")], candidates=["llm_select"], router="llm")
    result = ht.LayeredTeam([layer]).run_sync("2+2?", model=FunctionModel(model))
    route = result.trace[0]
    assert route.kind == "route" and route.detail["choice"] == "llm_select"
    assert route.detail["reason"] == "the answers disagree, so pick the most consistent."
    assert result.trace[-1].detail["strategy"] == "llm_select"
    assert result.usage.calls == 4  # router, two agents, selector

    fixed = ht.LayeredTeam([layer.model_copy(update={"router": "fixed"})]).run_sync("2+2?", model=FunctionModel(model))
    assert [ev.kind for ev in fixed.trace] == ["agent", "agent", "fusion"]


def test_a_router_reply_without_a_choice_falls_back_to_the_fixed_aggregator():
    layer = ht.Layer("solve", agents=[ht.Agent(name="a")], candidates=["llm_select"], router="llm")
    result = ht.LayeredTeam([layer]).run_sync("2+2?", model=FunctionModel(lambda r: "#### 4"))
    assert result.trace[0].detail["fallback"] is True
    assert result.trace[-1].detail["strategy"] == "majority_vote"


def refine_model() -> FunctionModel:
    critiques = iter(["Step 1 is wrong.\nVerdict: FIX", "Looks right.\nVerdict: OK"])

    def model(request: ChatRequest) -> str:
        kind = kind_of(request)
        if kind == "critique":
            return next(critiques)
        return "Fixed the sum.\n#### 4" if kind == "revise" else "#### 5"

    return FunctionModel(model)


@pytest.mark.parametrize("where", ["team", "layer"])
def test_refinement_revises_until_the_critique_finds_nothing(where):
    layer = ht.Layer("solve", agents=[ht.Agent(name="a")], refine=3 if where == "layer" else 0)
    team = ht.LayeredTeam([layer], refine=3 if where == "team" else 0)
    result = team.run_sync("2+2?", model=refine_model())
    assert result.answer == "4"
    assert [ev.kind for ev in result.trace][-3:] == ["critique", "revise", "critique"]
    assert result.trace[-1].detail == {"round": 2, "verdict": "OK", "stopped": True}
    assert result.usage.calls == 4  # the agent, then 3 of the 6 refinement calls allowed


# --- pool, assembly, cost -----------------------------------------------------


def test_assemble_builds_a_team_from_the_best_pooled_layers():
    pool = LayerPool()
    base = ht.load_team("ann-gsm8k")
    pool.add(base.layers[0], score=0.6, step=0, source="ann-gsm8k")
    better = base.layers[0].model_copy(update={"fusion": "llm_select"})
    pool.add(better, score=0.8, step=4, source="ann-gsm8k")
    pool.add(base.layers[1], score=0.8, step=4, source="ann-gsm8k")
    pool.add(two_layer_team().layers[1], score=0.5, step=1, source="tiny")
    team = assemble(pool, ["solve", "verify", "check"], name="grown")
    assert [layer.name for layer in team.layers] == ["solve", "verify", "check"]
    assert team.layers[0].fusion == "llm_select"
    assert len(pool.variants["solve"]) == 2
    with pytest.raises(ht.ConfigError, match="no layer 'nope'"):
        assemble(pool, ["nope"])


def test_cost_estimate_counts_team_calls_per_problem():
    team = ht.load_team("ann-gsm8k")
    cost = estimate(team, "Janet has 3 ducks.", train=40, val=40, batch=8, val_batch=8)
    assert cost.team_calls_per_problem == 4 and cost.steps == 5
    assert cost.calls_max > cost.calls > 5 * 8 * 4
    assert "calls" in cost.describe() and "tokens" in cost.describe()
