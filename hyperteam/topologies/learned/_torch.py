"""The one place that imports torch for the learned topologies, with a clear error when it is missing."""

from __future__ import annotations

from typing import Any

from hyperteam.errors import ConfigError


def require_torch() -> Any:
    """Returns the ``torch`` module.

    Raises:
        ConfigError: torch is not installed; names the extra to install.
    """
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "learned topologies need torch: pip install 'hyperteam[learn]' "
            "(install torch==2.13.0 first where a CPU-only build is wanted)"
        ) from None
    return torch
