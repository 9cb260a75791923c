"""Benchmarks run by ``hyperteam bench NAME``. Each prints a table and can write JSON."""

from __future__ import annotations

import importlib

from hyperteam.errors import ConfigError

BENCHMARKS = {
    "orchestration": "hyperteam.bench.orchestration",
    "prefix": "hyperteam.bench.prefix",
    "eval": "hyperteam.bench.eval_run",
    "service": "hyperteam.bench.service",
    "vllm": "hyperteam.bench.vllm_gpu",
    "topology-synthetic": "hyperteam.bench.topology_synthetic",
    "adaptive": "hyperteam.bench.adaptive",
    "learn": "hyperteam.bench.learn",
}


def run_benchmark(name: str, argv: list[str]) -> int:
    module = BENCHMARKS.get(name)
    if module is None:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return importlib.import_module(module).main(argv)
