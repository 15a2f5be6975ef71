"""Voxel grids and primitives of the 3D shapes world.

A voxel grid is a float array [4, N, N, N]: channel 0 occupancy in [0, 1] (> 0.5 = filled), channels 1-3 RGB in
[0, 1]; index order (x, y, z) with y up (rewards/shapes3d/world.py). Voxel (i, j, k) covers [i, i+1] x [j, j+1] x
[k, k+1] in voxel units; its centre is (i + 1/2, j + 1/2, k + 1/2). In world units (rewards/render3d.py) the grid
fills the cube [-1, 1]^3.

A primitive is given by its centre c and half-extents h (voxel units, per axis). With d = (p - c) / h for a voxel
centre p, the voxel is inside when
    cube      max |d_i| <= 1
    sphere    |d| <= 1
    cylinder  d_x^2 + d_z^2 <= 1 and |d_y| <= 1          (axis along y)
    cone      |d_y| <= 1 and sqrt(d_x^2 + d_z^2) <= (1 - d_y) / 2   (base down, apex up)
"""

from __future__ import annotations

import numpy as np

PRIMITIVES = ("cube", "sphere", "cone", "cylinder")


def primitive_mask(shape: str, centre, half, n: int | tuple[int, int, int]) -> np.ndarray:
    """Bool [nx, ny, nz]: the voxels whose centres lie inside the primitive."""
    dims = (n, n, n) if isinstance(n, int) else tuple(n)
    axes = [(np.arange(m) + 0.5 - c) / h for m, c, h in zip(dims, centre, half)]
    dx, dy, dz = np.meshgrid(*axes, indexing="ij")
    if shape == "cube":
        return np.maximum(np.maximum(np.abs(dx), np.abs(dy)), np.abs(dz)) <= 1
    if shape == "sphere":
        return dx**2 + dy**2 + dz**2 <= 1
    if shape == "cylinder":
        return (dx**2 + dz**2 <= 1) & (np.abs(dy) <= 1)
    if shape == "cone":
        return (np.abs(dy) <= 1) & (np.sqrt(dx**2 + dz**2) <= (1 - dy) / 2)
    raise ValueError(f"unknown primitive {shape!r}; choose one of {', '.join(PRIMITIVES)}")


def best_fit(mask: np.ndarray) -> tuple[str, float, dict[str, float]]:
    """The primitive that best fits a component `mask` (bool [N, N, N]): each primitive is fitted to the component's
    bounding box and scored by IoU with it. Returns (shape, its IoU, IoU per primitive)."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    sub = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    size = hi - lo
    ious = {}
    for shape in PRIMITIVES:
        tmpl = primitive_mask(shape, size / 2, size / 2, tuple(size))
        inter, union = np.logical_and(tmpl, sub).sum(), np.logical_or(tmpl, sub).sum()
        ious[shape] = float(inter / union) if union else 0.0
    shape = max(ious, key=ious.get)
    return shape, ious[shape], ious


def voxel_centres(occupied: np.ndarray) -> np.ndarray:
    """World coordinates [P, 3] in [-1, 1] of the occupied voxels of a bool grid [N, N, N] (x, y, z order)."""
    n = occupied.shape[0]
    return (np.argwhere(occupied) + 0.5) / n * 2 - 1


_FACES = (  # (axis, +1/-1 side) -> the 4 corners of that voxel face, as offsets in {0, 1}^3, in order
    ((0, 1), ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1))),
    ((0, -1), ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0))),
    ((1, 1), ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0))),
    ((1, -1), ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1))),
    ((2, 1), ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))),
    ((2, -1), ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0))),
)


def voxel_mesh(grid: np.ndarray, threshold: float = 0.5) -> dict:
    """The surface of a voxel grid [4, N, N, N] as a triangle mesh in world units ([-1, 1]^3): every face of a filled
    voxel (occupancy > threshold) whose neighbour is empty or outside, two triangles each, in the voxel's colour.
    Returns {"verts": [4F, 3], "faces": [2F, 3], "colors": [4F, 3]} float32 / int64 numpy arrays (per-vertex colours,
    each quad has its own 4 vertices)."""
    occ = np.asarray(grid[0]) > threshold
    n = occ.shape[0]
    pad = np.pad(occ, 1)
    verts, colors = [], []
    for (axis, side), corners in _FACES:
        shifted = np.roll(pad, -side, axis=axis)[1:-1, 1:-1, 1:-1]
        idx = np.argwhere(occ & ~shifted)  # [k, 3]
        if not len(idx):
            continue
        verts.append((idx[:, None, :] + np.array(corners)[None]).reshape(-1, 3))
        colors.append(np.repeat(np.asarray(grid[1:])[:, idx[:, 0], idx[:, 1], idx[:, 2]].T, 4, axis=0))
    if not verts:
        return {"verts": np.zeros((0, 3), np.float32), "faces": np.zeros((0, 3), np.int64),
                "colors": np.zeros((0, 3), np.float32)}
    v = np.concatenate(verts).astype(np.float32) / n * 2 - 1
    q = np.arange(len(v) // 4)[:, None] * 4
    faces = np.concatenate([q + np.array([0, 1, 2]), q + np.array([0, 2, 3])], axis=1).reshape(-1, 3)
    return {"verts": v, "faces": faces.astype(np.int64), "colors": np.concatenate(colors).clip(0, 1).astype(np.float32)}
