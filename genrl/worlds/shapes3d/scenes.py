"""Procedural scenes of the 3D shapes world: a spec -> a voxel grid [4, G, G, G] (rewards/shapes3d/geometry.py).

Every object is an upright primitive 5 or 7 voxels wide (half-extent in HALVES, the same on all axes) centred on a
voxel centre, so it voxelises symmetrically, in its named colour or a random palette colour. Objects are placed at
random, with at least GAP empty voxel layers between their bounding boxes (so each is its own component). For
"A <relation> B", B is placed first and A beside it along the relation's axis, 1-3 voxels apart, with at most 1
voxel of offset on the other axes. Rejection
sampling; every generated grid scores strict 1 under rewards.shapes3d (tested).
"""

from __future__ import annotations

import numpy as np

from rewards.shapes.world import COLORS
from rewards.shapes3d.geometry import primitive_mask
from rewards.shapes3d.world import RELATIONS

GRID = 16
HALVES = (2.5, 3.5)
GAP = 1
_PALETTE = {k: np.array(v, dtype=np.float32) / 255.0 for k, v in COLORS.items()}


def _inside(c: np.ndarray, h: float, n: int) -> bool:
    return bool(np.all(c - h >= 0) and np.all(c + h <= n))


def _apart(c: np.ndarray, h: float, placed: list[tuple[np.ndarray, float]]) -> bool:
    return all(np.max(np.abs(c - c2) - (h + h2)) >= GAP for c2, h2 in placed)


def _place(spec: dict, rng: np.random.Generator, n: int) -> list[tuple[str, str, np.ndarray, float]] | None:
    inc = spec["include"]
    objs = [(o["class"], o.get("color") or rng.choice(list(COLORS))) for o in inc for _ in range(o["count"])]
    halves = rng.choice(HALVES, len(objs))

    def centre(h: float) -> np.ndarray:
        return rng.integers(int(h - 0.5), int(n - h - 0.5), 3, endpoint=True) + 0.5

    placed: list[tuple[np.ndarray, float]] = []
    pos = inc[0].get("position")
    if pos is not None:  # B (clause 1) first, then A beside it
        hb, ha = halves[1], halves[0]
        cb = centre(hb)
        axis, sign = RELATIONS[pos[0]]
        ca = cb + rng.integers(-1, 1, 3, endpoint=True)
        ca[axis] = cb[axis] + sign * (ha + hb + rng.integers(GAP, 3, endpoint=True))
        if not (_inside(ca, ha, n) and _inside(cb, hb, n)):
            return None
        centres = [ca, cb]
    else:
        centres = []
        for h in halves:
            for _ in range(50):
                c = centre(h)
                if _apart(c, h, placed):
                    break
            else:
                return None
            placed.append((c, h))
            centres.append(c)
    return [(s, col, c, h) for (s, col), c, h in zip(objs, centres, halves)]


def render_scene(spec: dict, rng: np.random.Generator | int = 0, n: int = GRID) -> np.ndarray:
    """The voxel grid [4, n, n, n] float32 of one random scene of `spec` (empty voxels: occupancy 0, colour 0)."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    for _ in range(200):
        objs = _place(spec, rng, n)
        if objs is not None:
            break
    else:
        raise RuntimeError(f"could not place {spec['prompt']!r} in a {n}^3 grid")
    grid = np.zeros((4, n, n, n), dtype=np.float32)
    for shape, color, c, h in objs:
        m = primitive_mask(shape, c, (h, h, h), n)
        grid[0][m] = 1.0
        grid[1:, m] = _PALETTE[color][:, None]
    return grid


def render_batch(specs: list[dict], seed: int, n: int = GRID) -> np.ndarray:
    """[B, 4, n, n, n] in [0, 1]; scene b uses the generator seeded (seed, b)."""
    return np.stack([render_scene(s, np.random.default_rng((seed, b)), n) for b, s in enumerate(specs)])
