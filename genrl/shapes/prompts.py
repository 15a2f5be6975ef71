"""Prompt generator of the shapes world: GenEval's six categories and deterministic train/eval splits.

Categories (GenEval's): single_object ("a photo of a circle"), two_object ("a photo of a circle and a
square"), counting ("a photo of three triangles", optionally coloured, counts 1-4), colors ("a photo of a red
circle"), position ("a photo of a circle left of a square"), color_attr ("a photo of a red circle and a blue
square").

Held-out compositions (the eval split measures generalisation, as GenEval's test prompts do):
  - HELD_OUT_PAIRS: colour-shape pairs that never appear in train color_attr or coloured counting prompts
    (they do appear alone in `colors`, so the model knows how to draw them);
  - HELD_OUT_POSITIONS: one (shape A, relation, shape B) triple per ordered shape pair.
  train and eval are disjoint for color_attr, position and coloured counting prompts; single_object, colors,
  two_object and colourless counting prompts are shared (there are only a few of them).
The eval split is EVAL_PER_CATEGORY prompts per category, cycling through that category's eval pool in a
fixed order (duplicates get different seeds at sampling time); overall = mean over categories.
"""

from __future__ import annotations

import itertools
import random

from rewards.shapes.world import CATEGORIES, COLORS, MAX_COUNT, RELATIONS, SHAPES, make_spec

HELD_OUT_PAIRS = (("red", "triangle"), ("blue", "circle"), ("green", "square"), ("purple", "triangle"))
_ORDERED = [(a, b) for a in SHAPES for b in SHAPES if a != b]
HELD_OUT_POSITIONS = tuple((a, RELATIONS[i % len(RELATIONS)], b) for i, (a, b) in enumerate(_ORDERED))
EVAL_PER_CATEGORY = 48
SPLITS = ("train", "eval")


def _obj(shape, count=1, color=None):
    o = {"class": shape, "count": count}
    if color:
        o["color"] = color
    return o


def category_pool(category: str, split: str) -> list[dict]:
    """All specs of one category in one split (fixed order)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    held = set(HELD_OUT_PAIRS)
    train = split == "train"
    if category == "single_object":
        return [make_spec(category, [_obj(s)]) for s in SHAPES]
    if category == "two_object":
        return [make_spec(category, [_obj(a), _obj(b)]) for a, b in _ORDERED]
    if category == "colors":
        return [make_spec(category, [_obj(s, 1, c)]) for c in COLORS for s in SHAPES]
    if category == "counting":
        out = []
        for n, s in itertools.product(range(1, MAX_COUNT + 1), SHAPES):
            out.append(make_spec(category, [_obj(s, n)]))
            for c in COLORS:
                if ((c, s) in held) != train:
                    out.append(make_spec(category, [_obj(s, n, c)]))
        return out
    if category == "position":
        return [
            make_spec(category, [{**_obj(a), "position": [rel, 1]}, _obj(b)])
            for (a, b), rel in itertools.product(_ORDERED, RELATIONS)
            if ((a, rel, b) in HELD_OUT_POSITIONS) != train
        ]
    if category == "color_attr":
        out = []
        for (a, b), c1, c2 in itertools.product(_ORDERED, COLORS, COLORS):
            if c1 != c2 and (((c1, a) in held or (c2, b) in held) != train):
                out.append(make_spec(category, [_obj(a, 1, c1), _obj(b, 1, c2)]))
        return out
    raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")


def split_specs(split: str, per_category: int | None = None) -> list[dict]:
    """The split as a list of specs. train: every train spec (unique). eval: `per_category` (default
    EVAL_PER_CATEGORY) per category, cycling through a seeded shuffle of the category's eval pool."""
    if split == "train":
        return [s for c in CATEGORIES for s in category_pool(c, "train")]
    n = EVAL_PER_CATEGORY if per_category is None else per_category
    out = []
    for c in CATEGORIES:
        pool = category_pool(c, "eval")
        random.Random(f"shapes-eval-{c}").shuffle(pool)
        out += [pool[i % len(pool)] for i in range(n)]
    return out


class PromptSampler:
    """Seeded stream of training specs: a uniform category, then a uniform spec of that category."""

    def __init__(self, split: str = "train", seed: int = 0, categories=CATEGORIES):
        self.pools = {c: category_pool(c, split) for c in categories}
        self.cats = list(self.pools)
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[dict]:
        return [self.rng.choice(self.pools[self.rng.choice(self.cats)]) for _ in range(n)]


def prompts_and_metadata(specs: list[dict]) -> tuple[list[str], list[dict]]:
    """(prompts, metadata) in the form rewards.load("shapes") takes."""
    return [s["prompt"] for s in specs], [{"spec": s} for s in specs]
