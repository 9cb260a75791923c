"""Teams saved to and loaded from YAML/JSON, built-in teams, and errors that name the field and file."""

from __future__ import annotations

from pathlib import Path

import pytest

import hyperteam as ht


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_saved_team_loads_back_equal(tmp_path: Path, suffix: str):
    team = ht.load_team("ann-gsm8k")
    team.layers[0].agents[0].instructions = "A trained prompt: check units first."
    path = tmp_path / f"team{suffix}"
    team.save(path)
    again = ht.load_team(path)
    assert again == team
    assert again.layers[0].agents[0].instructions == "A trained prompt: check units first."


@pytest.mark.parametrize("name", ["single", "self-consistency", "ann-gsm8k"])
def test_builtin_teams_load_by_name(name: str):
    team = ht.load_team(name)
    assert team.name == name and team.agents


def test_self_consistency_has_five_samples_and_votes():
    team = ht.load_team("self-consistency")
    (layer,) = team.layers
    (solver,) = layer.agents
    assert solver.samples == 5 and solver.temperature and solver.temperature > 0
    assert layer.fusion == "majority_vote"


def test_a_bad_field_is_named_with_its_file(tmp_path: Path):
    path = tmp_path / "team.yaml"
    path.write_text(
        "name: t\nlayers:\n  - name: solve\n    agents:\n      - name: a\n      - name: b\n        temperature: 9\n"
    )
    with pytest.raises(ht.ConfigError) as info:
        ht.load_team(path)
    msg = str(info.value)
    assert str(path) in msg and "layers[0].agents[1].temperature" in msg and "\n" not in msg


def test_unknown_fields_and_fusions_are_named(tmp_path: Path):
    path = tmp_path / "team.json"
    path.write_text('{"layers": [{"name": "s", "agents": [{"name": "a", "rol": "typo"}]}]}')
    with pytest.raises(ht.ConfigError, match=r"layers\[0\]\.agents\[0\]\.rol: Extra inputs"):
        ht.load_team(path)
    path.write_text('{"layers": [{"name": "s", "agents": [{"name": "a"}], "fusion": "mode"}]}')
    with pytest.raises(ht.ConfigError, match=r"layers\[0\]\.fusion: unknown fusion 'mode'"):
        ht.load_team(path)


def test_syntax_errors_name_the_line(tmp_path: Path):
    path = tmp_path / "team.yaml"
    path.write_text("name: t\nlayers:\n  - name: [unclosed\n")
    with pytest.raises(ht.ConfigError, match=r"team\.yaml:\d+: invalid YAML"):
        ht.load_team(path)
    bad_json = tmp_path / "team.json"
    bad_json.write_text('{"name": "t",\n "layers": [}\n')
    with pytest.raises(ht.ConfigError, match=r"team\.json:2: invalid JSON"):
        ht.load_team(bad_json)


def test_missing_files_and_unknown_names():
    with pytest.raises(ht.ConfigError, match="does not exist"):
        ht.load_team("nowhere/team.yaml")
    with pytest.raises(ht.ConfigError, match="built-in teams: ann-gsm8k"):
        ht.load_team("no-such-team")
