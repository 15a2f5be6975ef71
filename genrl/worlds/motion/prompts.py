"""Prompt splits of the moving-shapes video world (specs in rewards/motion/world.py).

Pools per category: direction (shape x colour-or-none x 4 directions), still (shape x colour-or-none) and
two_motion (ordered pairs of different shapes x colour-or-none each, not both the same colour, x apart/together).
Held out for eval (generalisation to unseen compositions): the fully coloured specs whose
(colour indices + shape indices + motion index) % HOLD_OUT_MOD == 0, about a quarter of them. Uncoloured and
`still` specs are shared between the splits (there are few of them).
Splits: genrl/worlds/splits.py (EVAL_PER_CATEGORY per category for eval; overall = mean over categories).
"""

from __future__ import annotations

import itertools

from genrl.worlds.splits import SpecSampler, balanced_split
from rewards.motion.world import CATEGORIES, DIRECTIONS, PAIR_MOTIONS, make_spec
from rewards.shapes.world import COLORS, SHAPES

HOLD_OUT_MOD = 4
EVAL_PER_CATEGORY = 32
SPLITS = ("train", "eval")
_COLORS = (None, *COLORS)


def _obj(shape: str, color: str | None) -> dict:
    return {"class": shape, **({"color": color} if color else {})}


def _held(colors: tuple, shapes: tuple, motion: int) -> bool:
    if any(c is None for c in colors):
        return False
    return (sum(_COLORS.index(c) for c in colors) + sum(SHAPES.index(s) for s in shapes) + motion) % HOLD_OUT_MOD == 0


def category_pool(category: str, split: str) -> list[dict]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    want_held = split == "eval"
    if category == "direction":
        return [make_spec("direction", [_obj(s, c)], d) for s, c, (i, d) in
                itertools.product(SHAPES, _COLORS, enumerate(DIRECTIONS))
                if c is None or _held((c,), (s,), i) == want_held]
    if category == "still":
        return [make_spec("still", [_obj(s, c)], "still") for s, c in itertools.product(SHAPES, _COLORS)]
    if category == "two_motion":
        out = []
        for (a, b), c1, c2, (i, m) in itertools.product(itertools.permutations(SHAPES, 2), _COLORS, _COLORS,
                                                        enumerate(PAIR_MOTIONS)):
            if c1 is not None and c1 == c2:
                continue
            if (c1 is None or c2 is None) or _held((c1, c2), (a, b), i) == want_held:
                out.append(make_spec("two_motion", [_obj(a, c1), _obj(b, c2)], m))
        return out
    raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")


def split_specs(split: str, per_category: int | None = None) -> list[dict]:
    pools = {c: category_pool(c, split) for c in CATEGORIES}
    return balanced_split(pools, split, EVAL_PER_CATEGORY if per_category is None else per_category, "motion")


def spec_sampler(split: str = "train", seed: int = 0) -> SpecSampler:
    """Pretraining data: a uniform category, then a uniform spec of it."""
    return SpecSampler([category_pool(c, split) for c in CATEGORIES], seed)
