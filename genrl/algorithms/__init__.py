"""RL algorithms, one file each, found by name (`algorithm.name` in a config).

`get_algorithm(name)` imports the module listed in `_MODULES` lazily and returns the registered class.
See genrl/algorithms/base.py for the interface.
"""

from __future__ import annotations

import difflib
import importlib

from genrl.algorithms.base import (
    _REGISTRY,
    Algorithm,
    AlgorithmConfig,
    Batch,
    RolloutSpec,
    StepContext,
    register_algorithm,
)

# algorithm name -> module that registers it (add one line per new method)
_MODULES: dict[str, str] = {
    "grpo": "genrl.algorithms.grpo",
    "nft": "genrl.algorithms.nft",
    "awm": "genrl.algorithms.awm",
    "bgpo": "genrl.algorithms.bgpo",
    "diffu_grpo": "genrl.algorithms.diffu_grpo",
    "elbo_grpo": "genrl.algorithms.elbo_grpo",
    "pi_rl": "genrl.algorithms.pi_rl",
    "ctrl": "genrl.algorithms.ctrl",
}


def available() -> list[str]:
    return sorted(set(_MODULES) | set(_REGISTRY))


def get_algorithm(name: str) -> type[Algorithm]:
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), available(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown algorithm.name {name!r}{hint}; available: {', '.join(available())}")
    return _REGISTRY[name]


__all__ = [
    "Algorithm", "AlgorithmConfig", "Batch", "RolloutSpec", "StepContext", "available", "get_algorithm",
    "register_algorithm",
]
