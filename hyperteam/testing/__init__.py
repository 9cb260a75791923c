"""Test doubles and the simulated model, for tests, benchmarks and offline demos.

Everything produced with the simulated model is marked simulated.
"""

from hyperteam.testing.doubles import FunctionModel, ScriptedModel, ScriptError

__all__ = ["FunctionModel", "ScriptError", "ScriptedModel"]
