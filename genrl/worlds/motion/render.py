"""Renderer of the moving-shapes video world: ground-truth clips for a spec (the pretraining data).

A clip is `frames` frames of `size` x `size` pixels drawn like the shapes world (rewards/shapes colours, white
background, 4x supersampled). Objects have side SIZE_RANGE * size (PAIR_SIZE_RANGE for two) and move at constant
velocity, in pixels per frame at 32 px (scaled with the size):
  direction   speed uniform in DIR_SPEED along the axis, the whole path inside the frame
  still       no motion
  two_motion  side by side on a shared horizontal band (vertical offset <= 2 px), each moving horizontally at
              PAIR_SPEED, away from (apart) or towards (together) the other; the closest gap stays >= MIN_GAP
Every rendered clip scores strict 1 under the world's reward (tested).
"""

from __future__ import annotations

import random

import numpy as np

from genrl.shapes.render import draw_objects
from rewards.shapes.world import COLORS

FRAMES = 8
SIZE_RANGE = (0.26, 0.32)  # one object
PAIR_SIZE_RANGE = (0.29, 0.31)  # two objects (room to move apart)
DIR_SPEED = (1.5, 2.1)
PAIR_SPEED = (0.5, 0.6)
MIN_GAP = 2.5
_AXIS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def trajectories(spec: dict, size: int, frames: int, rng: random.Random) -> list[tuple]:
    """[(shape, colour, side, (x0, y0), (vx, vy))] for the spec's objects (pixel units)."""
    k = size / 32.0
    sizes = PAIR_SIZE_RANGE if len(spec["include"]) == 2 else SIZE_RANGE
    objs = [(o["class"], o.get("color") or rng.choice(list(COLORS)), rng.uniform(*sizes) * size)
            for o in spec["include"]]
    span = frames - 1
    if spec["tag"] != "two_motion":
        (shape, color, s), = objs
        v = 0.0 if spec["motion"] == "still" else rng.uniform(*DIR_SPEED) * k
        ux, uy = _AXIS.get(spec["motion"], (0, 0))
        lo, hi = s / 2, size - s / 2
        # start so that the whole path stays inside
        x0 = rng.uniform(lo + max(0, -ux) * v * span, hi - max(0, ux) * v * span)
        y0 = rng.uniform(lo + max(0, -uy) * v * span, hi - max(0, uy) * v * span)
        return [(shape, color, s, (x0, y0), (ux * v, uy * v))]
    v = rng.uniform(*PAIR_SPEED) * k
    sa, sb = objs[0][2], objs[1][2]
    near = (sa + sb) / 2 + MIN_GAP * k  # centre distance at the closest frame
    far = near + 2 * v * span
    if far > size - (sa + sb) / 2:
        raise ValueError(f"clip of {size}px too small for {spec['prompt']!r}; use size >= 32")
    d0 = far if spec["motion"] == "together" else near
    left_first = rng.random() < 0.5  # which prompt object starts on the left
    lo = sa / 2 if left_first else sb / 2
    hi = size - far - (sb / 2 if left_first else sa / 2)
    xl = rng.uniform(lo, hi) + (far - d0) / 2  # the pair's midpoint stays put
    xr = xl + d0
    y = rng.uniform(max(sa, sb) / 2 + 1, size - max(sa, sb) / 2 - 1)
    dy = rng.uniform(-1.0, 1.0) * k
    sign = -1 if spec["motion"] == "apart" else 1  # the left object's x direction
    left, right = (objs[0], objs[1]) if left_first else (objs[1], objs[0])
    return [(*left, (xl, y - dy), (sign * v, 0.0)), (*right, (xr, y + dy), (-sign * v, 0.0))]


def render_clip(spec: dict, size: int = 32, frames: int = FRAMES, rng: random.Random | int | None = None) -> np.ndarray:
    """uint8 [frames, size, size, 3]."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    paths = trajectories(spec, size, frames, rng)
    return np.stack([
        np.asarray(draw_objects([(sh, c, s, x + vx * f, y + vy * f) for sh, c, s, (x, y), (vx, vy) in paths], size))
        for f in range(frames)])


def render_batch(specs: list[dict], size: int = 32, frames: int = FRAMES, seed: int = 0) -> np.ndarray:
    """float32 [N, 3, frames, size, size] in [-1, 1] (the video model's pixel space, channels before frames)."""
    rng = random.Random(seed)
    arr = np.stack([render_clip(s, size, frames, rng) for s in specs]).astype(np.float32)
    return arr.transpose(0, 4, 1, 2, 3) / 127.5 - 1.0
