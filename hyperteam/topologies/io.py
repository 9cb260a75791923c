"""Loading teams from YAML/JSON files or built-in names, and saving them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from hyperteam.errors import ConfigError
from hyperteam.topologies.hypergraph import HypergraphTeam
from hyperteam.topologies.layered import LayeredTeam
from hyperteam.topologies.learned.team import LearnedHypergraphTeam
from hyperteam.topologies.team import Team

TEAM_KINDS: dict[str, type[Team]] = {
    "layered": LayeredTeam,
    "hypergraph": HypergraphTeam,
    "learned": LearnedHypergraphTeam,
}


def team_from_dict(data: Any, *, source: str = "team spec") -> Team:
    """Validates plain data into a team. Errors name the source and the bad field.

    Raises:
        ConfigError: e.g. ``team.yaml: layers[0].agents[1].temperature: Input should be ...``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a team spec must be a mapping, got {type(data).__name__}")
    kind = data.get("kind", "learned" if "topology" in data else "layered")
    if kind == "hypergraph" and "topology" in data:  # a hypergraph whose hyperedges are learned
        data, kind = {**data, "kind": "learned"}, "learned"
    cls = TEAM_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"{source}: kind: unknown team kind {kind!r}; known: {', '.join(sorted(TEAM_KINDS))}")
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ""
    for part in first["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where or 'spec'}: {msg}{more}"


def load_team(spec: str | Path) -> Team:
    """A team from a YAML/JSON file, or a built-in team by name (``ann-gsm8k``, ``single``, ...).

    Raises:
        ConfigError: no such file or built-in; unreadable file; invalid spec (names the field).
    """
    path = Path(spec)
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"team file {str(path)!r} does not exist")
        return team_from_dict(_relative_to(_read(path), path.parent), source=str(path))
    from hyperteam.topologies.builtin import BUILTIN_TEAMS

    factory = BUILTIN_TEAMS.get(str(spec))
    if factory is None:
        raise ConfigError(
            f"no team file or built-in team named {str(spec)!r}; built-in teams: {', '.join(sorted(BUILTIN_TEAMS))}"
        )
    return factory()


def _relative_to(data: Any, folder: Path) -> Any:
    """A learned topology's file is named relative to the spec that names it."""
    topology = data.get("topology") if isinstance(data, dict) else None
    learned = topology.get("learned") if isinstance(topology, dict) else None
    if isinstance(learned, str) and not Path(learned).is_absolute():
        return {**data, "topology": {**topology, "learned": str(folder / learned)}}
    return data


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read team file {str(path)!r}: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def team_to_dict(team: Team) -> dict[str, Any]:
    """The team's spec as plain data; model objects are written by their names."""
    data = team.model_dump(mode="python", exclude_defaults=False)
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    raise ConfigError(f"cannot save a value of type {type(value).__name__} in a team file")


def save_team(team: Team, path: str | Path) -> None:
    path = Path(path)
    data = team_to_dict(team)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        raise ConfigError(f"cannot save a team to {str(path)!r}: use a .json, .yaml or .yml file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
