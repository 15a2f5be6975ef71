"""Category-balanced prompt splits of the embedded worlds (motion, 3D shapes), from per-category spec pools.

train: every train spec, each category's pool cycled to the largest's length (categories weigh the same).
eval: `per_category` specs per category from a seeded shuffle of its eval pool (cycled if the pool is smaller);
a world's `overall` score is the mean over categories.
"""

from __future__ import annotations

import random


def balanced_split(pools: dict[str, list[dict]], split: str, per_category: int, world: str) -> list[dict]:
    if split == "train":
        n = max(len(p) for p in pools.values())
        return [p[i % len(p)] for i in range(n) for p in pools.values()]
    out = []
    for c, pool in pools.items():
        pool = list(pool)
        random.Random(f"{world}-eval-{c}").shuffle(pool)
        out += [pool[i % len(pool)] for i in range(per_category)]
    return out


class SpecSampler:
    """Seeded stream of specs: a uniform category, then a uniform spec of it (pretraining data)."""

    def __init__(self, pools: list[list[dict]], seed: int = 0):
        self.pools = pools
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[dict]:
        return [self.rng.choice(self.rng.choice(self.pools)) for _ in range(n)]
