"""The public surface is a promise: this pins it, so that a change to it is a decision."""

import hyperteam as ht

EXPORTED = {
    "Agent", "AgentOutput", "ChatModel", "ChatRequest", "ChatResult", "ConfigError", "Fusion", "HypergraphTeam",
    "HyperteamError", "Layer", "LayeredTeam", "LearnedHypergraphTeam", "LimitError", "ModelError", "ParseError",
    "Runtime", "Team", "TeamResult", "TraceEvent", "Usage", "__version__", "datasets", "evaluate", "extract_answer",
    "get_fusion", "load_team", "models", "optim",
}  # fmt: skip


def test_exported_names_are_pinned():
    assert set(ht.__all__) == EXPORTED
    for name in ht.__all__:
        assert getattr(ht, name) is not None


def test_errors_form_one_hierarchy():
    for error in (ht.ConfigError, ht.ModelError, ht.ParseError, ht.LimitError):
        assert issubclass(error, ht.HyperteamError)


async def test_evaluate_as_the_design_shows_it(tmp_path):
    team = ht.load_team("single")
    report = await ht.evaluate(
        team, ht.datasets.load("demo", limit=5), concurrency=4, store=tmp_path / "exp.sqlite", model="sim:1.0"
    )
    assert report["n"] == 5 and report["accuracy"]["strict"] == 1.0 and report["simulated"]
    assert (tmp_path / "exp.sqlite").exists()
