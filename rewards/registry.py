"""Name -> reward factory registry: `load(name, **options)` and `available()`.

Reward modules register themselves with `@register("name")` on a class or factory. Modules are imported
lazily (see `_MODULES`) so `import rewards` stays light and optional dependencies load only when used.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable

from rewards.base import Reward

_FACTORIES: dict[str, Callable[..., Reward]] = {}
# reward name -> module that registers it (add a line when adding a reward)
_MODULES: dict[str, str] = {
    "pickscore": "rewards.pickscore",
    "clip_score": "rewards.clip_score",
    "aesthetic": "rewards.aesthetic",
    "hpsv2": "rewards.hpsv2",
    "imagereward": "rewards.imagereward",
    "ocr": "rewards.ocr",
    "jpeg_compressibility": "rewards.jpeg",
    "jpeg_incompressibility": "rewards.jpeg",
    "geneval": "rewards.geneval",
    "shapes": "rewards.shapes",
    "shapes_size": "rewards.shapes.attributes",
    "shapes_side": "rewards.shapes.attributes",
    "motion": "rewards.motion",
    "shapes3d": "rewards.shapes3d",
    "per_frame": "rewards.video",
    "temporal_flickering": "rewards.video",
    "classifier": "rewards.classifier",
    "vlm_judge": "rewards.vlm_judge",
    "multiview3d": "rewards.multiview3d",
    "math_answer": "rewards.verifiers",
    "sudoku": "rewards.verifiers",
    "countdown": "rewards.verifiers",
    "episode_success": "rewards.episode",
}


def register(name: str):
    def deco(factory):
        _FACTORIES[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(set(_MODULES) | set(_FACTORIES))


def load(name: str, **options) -> Reward:
    """Build the reward called `name` with its options (e.g. model=..., device=..., local_files_only=...)."""
    if name not in _FACTORIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, available(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown reward {name!r}{hint}; available: {', '.join(available())}")
    factory = _FACTORIES[name]
    _check_options(name, factory, options)
    return factory(**options)


def options_of(name: str) -> dict[str, object]:
    """The load() options of reward `name` with their defaults (inspect.Parameter.empty when required)."""
    load_module = _MODULES.get(name)
    if name not in _FACTORIES and load_module:
        importlib.import_module(load_module)
    if name not in _FACTORIES:
        raise ValueError(f"unknown reward {name!r}; available: {', '.join(available())}")
    params = inspect.signature(_FACTORIES[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_options(name: str, factory, options: dict) -> None:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    known = {p.name for p in params if p.kind != p.VAR_POSITIONAL}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"reward {name!r} has no option(s) {unknown}; its options are: {', '.join(sorted(known))}")
