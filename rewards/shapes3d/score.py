"""Exact scoring of a voxel grid against a 3D shapes spec: connected components -> primitive fit, colour, relation.

Objects are the 6-connected components of occupancy > 0.5 with at least MIN_VOXELS voxels (smaller specks are
ignored). Each object gets the primitive with the best bounding-box IoU (geometry.best_fit; a fit below MIN_FIT is
no shape) and the palette colour nearest (RGB distance) to its mean voxel colour. Prompt objects (clauses expanded
by count) are matched one-to-one to objects, maximising the number of right shapes and colours.
Checks, each in [0, 1]:
  count     1 if the number of objects equals the prompt's total count (closed world: an extra object or two
            objects merged into one costs), else 0
  shape     fraction of prompt objects matched to an object of their primitive
  color     fraction of coloured prompt objects matched to an object of their colour (absent if no colour is named)
  relation  (relation prompts) 1 if the matched objects' centroids differ along the relation's axis by at least
            MIN_SEP voxels, in its direction, and more than along either other axis
strict (0/1): every applicable check is 1. partial: their mean. `checks` restricts both to a subset (e.g. the
coarse stage of configs/3d: count, relation, color; its fine stage: shape).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from rewards.shapes.world import COLORS
from rewards.shapes3d.geometry import best_fit
from rewards.shapes3d.world import RELATIONS

CHECKS = ("count", "shape", "color", "relation")
MIN_VOXELS = 4
MIN_FIT = 0.5
MIN_SEP = 2.0
MAX_MATCHED = 6  # objects considered for matching (the largest)
_PALETTE = np.array(list(COLORS.values()), dtype=np.float64) / 255.0
_NAMES = tuple(COLORS)


def find_objects(grid: np.ndarray) -> list[dict]:
    """Objects of a voxel grid [4, N, N, N]: dicts with voxels, centroid (voxel units), shape, fit, color; largest
    first."""
    occ = grid[0] > 0.5
    labels, n = ndimage.label(occ)
    out = []
    for k in range(1, n + 1):
        mask = labels == k
        size = int(mask.sum())
        if size < MIN_VOXELS:
            continue
        shape, fit, _ = best_fit(mask)
        rgb = grid[1:, mask].mean(1)
        color = _NAMES[int(np.argmin(((_PALETTE - rgb) ** 2).sum(1)))]
        out.append({"voxels": size, "centroid": np.argwhere(mask).mean(0) + 0.5, "shape": shape if fit >= MIN_FIT
                    else None, "fit": fit, "color": color})
    return sorted(out, key=lambda o: -o["voxels"])


def relation_holds(a: dict, b: dict, relation: str) -> bool:
    axis, sign = RELATIONS[relation]
    d = a["centroid"] - b["centroid"]
    along = sign * d[axis]
    return bool(along >= MIN_SEP and all(along > abs(d[i]) for i in range(3) if i != axis))


def score_grid(grid: np.ndarray, spec: dict, checks: tuple[str, ...] = CHECKS) -> dict:
    objects = find_objects(grid)
    wanted = [o for o in spec["include"] for _ in range(o["count"])]
    clause = [i for i, o in enumerate(spec["include"]) for _ in range(o["count"])]
    cands = objects[:MAX_MATCHED]

    def value(perm) -> int:
        return sum((cands[j]["shape"] == w["class"]) + (not w.get("color") or cands[j]["color"] == w["color"])
                   for j, w in zip(perm, wanted))

    k = min(len(cands), len(wanted))
    best = max(itertools.permutations(range(len(cands)), k), key=value, default=())
    match = [cands[j] for j in best] + [None] * (len(wanted) - k)
    result = {"count": float(len(objects) == len(wanted)),
              "shape": float(np.mean([m is not None and m["shape"] == w["class"] for m, w in zip(match, wanted)]))}
    coloured = [(m, w) for m, w in zip(match, wanted) if w.get("color")]
    if coloured:
        result["color"] = float(np.mean([m is not None and m["color"] == w["color"] for m, w in coloured]))
    pos = spec["include"][0].get("position")
    if pos is not None:
        a, b = match[clause.index(0)], match[clause.index(pos[1])]
        result["relation"] = float(a is not None and b is not None and relation_holds(a, b, pos[0]))
    used = [result[c] for c in checks if c in result]
    return {"checks": result, "objects": objects,
            "strict": float(all(v == 1.0 for v in used)), "partial": float(np.mean(used)) if used else 1.0}
