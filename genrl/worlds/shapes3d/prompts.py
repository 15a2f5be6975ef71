"""Prompt splits of the 3D shapes world (specs in rewards/shapes3d/world.py).

Pools per category: single (shape x colour-or-none), counting (shape x colour-or-none x 2-3), two_object (unordered
pairs of different shapes x colour-or-none each) and relation (ordered pairs of different shapes x colour-or-none
each x 6 relations). Held out for eval (unseen compositions): the fully coloured two_object and relation specs with
(colour indices + shape indices + relation index) % HOLD_OUT_MOD == 0, about a quarter of them; the eval pools of
these two categories are exactly the held-out specs, the train pools everything else (uncoloured specs included).
single and counting specs are few and shared by both splits. Splits: genrl/worlds/splits.py (EVAL_PER_CATEGORY per
category for eval).
"""

from __future__ import annotations

import itertools

from genrl.worlds.splits import SpecSampler, balanced_split
from rewards.shapes.world import COLORS
from rewards.shapes3d.world import CATEGORIES, RELATIONS, SHAPES, make_spec

HOLD_OUT_MOD = 4
EVAL_PER_CATEGORY = 32
SPLITS = ("train", "eval")
_COLORS = (None, *COLORS)
_RELATIONS = tuple(RELATIONS)


def _obj(shape: str, color: str | None, count: int = 1) -> dict:
    return {"class": shape, "count": count, **({"color": color} if color else {})}


def _held(colors: tuple, shapes: tuple, k: int) -> bool:
    if any(c is None for c in colors):
        return False
    return (sum(_COLORS.index(c) for c in colors) + sum(SHAPES.index(s) for s in shapes) + k) % HOLD_OUT_MOD == 0


def category_pool(category: str, split: str) -> list[dict]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    held = split == "eval"
    if category == "single":
        return [make_spec("single", [_obj(s, c)]) for s, c in itertools.product(SHAPES, _COLORS)]
    if category == "counting":
        return [make_spec("counting", [_obj(s, c, n)]) for s, c, n in itertools.product(SHAPES, _COLORS, (2, 3))]
    if category == "two_object":
        return [make_spec("two_object", [_obj(a, c1), _obj(b, c2)])
                for (a, b), c1, c2 in itertools.product(itertools.combinations(SHAPES, 2), _COLORS, _COLORS)
                if (c1 is not None and c2 is not None and _held((c1, c2), (a, b), 0) == held) or
                (not held and (c1 is None or c2 is None))]
    if category == "relation":
        return [make_spec("relation", [{**_obj(a, c1), "position": [r, 1]}, _obj(b, c2)])
                for (a, b), c1, c2, (k, r) in itertools.product(itertools.permutations(SHAPES, 2), _COLORS, _COLORS,
                                                                enumerate(_RELATIONS))
                if (c1 is not None and c2 is not None and _held((c1, c2), (a, b), k) == held) or
                (not held and (c1 is None or c2 is None))]
    raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")


def split_specs(split: str, per_category: int | None = None) -> list[dict]:
    pools = {c: category_pool(c, split) for c in CATEGORIES}
    return balanced_split(pools, split, EVAL_PER_CATEGORY if per_category is None else per_category, "shapes3d")


def spec_sampler(split: str = "train", seed: int = 0) -> SpecSampler:
    """Pretraining data: a uniform category, then a uniform spec of it."""
    return SpecSampler([category_pool(c, split) for c in CATEGORIES], seed)
