"""Renderer of the shapes world: ground-truth images for a spec (the pretraining data).

Each object is a filled circle, square or apex-up triangle of side SIZE_RANGE * image side, in its spec colour
(a uniformly random palette colour when the spec gives none), on a white background, placed at a random
position with a gap of GAP * side to every other object. Position clauses are satisfied with a clear margin
(re-drawn until the reward's own relation test passes, and |off-axis offset| <= half the on-axis offset).
Drawn 4x supersampled and box-downsampled (anti-aliased edges).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from rewards.shapes.detect import DetectedObject
from rewards.shapes.score import relations
from rewards.shapes.world import BACKGROUND, COLORS

SIZE_RANGE = (0.26, 0.36)
GAP = 0.07
SS = 4  # supersampling factor


def _layout(spec: dict, size: int, rng: random.Random):
    """[(shape, colour, side_px, cx, cy)] satisfying the spec, or None if this attempt failed."""
    objs, clause_of = [], []
    for i, o in enumerate(spec["include"]):
        for _ in range(o["count"]):
            objs.append([o["class"], o.get("color") or rng.choice(list(COLORS))])
            clause_of.append(i)
    placed = []
    gap = GAP * size
    for shape, color in objs:
        s = rng.uniform(*SIZE_RANGE) * size
        for _ in range(100):
            cx, cy = rng.uniform(s / 2, size - s / 2), rng.uniform(s / 2, size - s / 2)
            # separate boxes by at least the gap on one axis
            if all(abs(cx - px) >= (s + ps) / 2 + gap or abs(cy - py) >= (s + ps) / 2 + gap
                   for _, _, ps, px, py in placed):
                placed.append((shape, color, s, cx, cy))
                break
        else:
            return None
    for i, o in enumerate(spec["include"]):
        if o.get("position"):
            rel, j = o["position"][0], int(o["position"][1])
            a = [p for p, c in zip(placed, clause_of) if c == i]
            b = [p for p, c in zip(placed, clause_of) if c == j]
            for pa in a:
                for pb in b:
                    dx, dy = pa[3] - pb[3], pa[4] - pb[4]
                    on, off = (dx, dy) if rel in ("left of", "right of") else (dy, dx)
                    if abs(off) > 0.5 * abs(on) or rel not in relations(_box(pa), _box(pb)):
                        return None
    return placed


def _box(p) -> DetectedObject:
    _, _, s, cx, cy = p
    return DetectedObject(p[0], p[1], 0, (cx, cy), (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), 1.0)


def render(spec: dict, size: int = 32, rng: random.Random | int | None = None) -> Image.Image:
    """An RGB PIL image of `size` x `size` that satisfies `spec` (see module docstring)."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    for _ in range(1000):
        placed = _layout(spec, size, rng)
        if placed is not None:
            break
    else:
        raise ValueError(f"could not lay out {spec.get('prompt', spec)} at {size}px; use a larger size")
    return draw_objects(placed, size)


def draw_objects(placed, size: int) -> Image.Image:
    """[(shape, colour, side_px, cx, cy)] drawn on the white background (4x supersampled, box-downsampled)."""
    big = Image.new("RGB", (size * SS, size * SS), BACKGROUND)
    draw = ImageDraw.Draw(big)
    for shape, color, s, cx, cy in placed:
        x0, y0, x1, y1 = [v * SS for v in (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)]
        fill = COLORS[color]
        if shape == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif shape == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return big.resize((size, size), Image.BOX)


def render_batch(specs: list[dict], size: int = 32, seed: int = 0) -> np.ndarray:
    """float32 [N, 3, size, size] in [-1, 1] (the model's pixel space); deterministic given seed."""
    rng = random.Random(seed)
    arr = np.stack([np.asarray(render(s, size, rng), dtype=np.float32) for s in specs])
    return arr.transpose(0, 3, 1, 2) / 127.5 - 1.0
