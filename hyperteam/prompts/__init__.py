"""Prompt templates: YAML files beside this module, rendered with Jinja2 ``StrictUndefined``.

Each file holds named templates (``agent.yaml`` has ``system`` and ``user``).
A missing variable is an error, never an empty string in a prompt.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jinja2
import yaml

from hyperteam.errors import ConfigError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@functools.cache
def _templates(file: str) -> dict[str, jinja2.Template]:
    try:
        text = resources.files(__package__).joinpath(f"{file}.yaml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no prompt file {file}.yaml in hyperteam/prompts") from None
    raw = yaml.safe_load(text)
    return {name: _ENV.from_string(body) for name, body in raw.items()}


def template(file: str, name: str) -> jinja2.Template:
    """The compiled template ``name`` of ``prompts/<file>.yaml``."""
    try:
        return _templates(file)[name]
    except KeyError:
        raise ConfigError(f"prompts/{file}.yaml has no template {name!r}") from None


def render(file: str, name: str, **variables: Any) -> str:
    """Renders template ``name`` of ``prompts/<file>.yaml`` with ``variables``."""
    try:
        return template(file, name).render(**variables).strip()
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"prompts/{file}.yaml:{name}: {exc}") from None
