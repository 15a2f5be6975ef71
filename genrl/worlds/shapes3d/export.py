"""3D outputs people can open: voxel grids -> PLY meshes (any viewer: MeshLab, Blender, Windows 3D Viewer) and
turntable renders.

PLY: ASCII, `element vertex` with x y z (float, world units: the grid fills [-1, 1]^3, y up) and red green blue
(uchar), `element face` with vertex_indices (triangles). Written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from rewards.render3d import orbit_cameras, render_views
from rewards.shapes3d.geometry import voxel_mesh


def write_ply(path: str, mesh: dict) -> str:
    verts, faces = np.asarray(mesh["verts"], dtype=np.float32), np.asarray(mesh["faces"], dtype=np.int64)
    if len(verts) == 0 or len(faces) == 0:
        raise ValueError(f"cannot write {path}: the asset is empty (no filled voxel); nothing written")
    if not np.isfinite(verts).all():
        raise ValueError(f"cannot write {path}: the asset has non-finite vertices; nothing written")
    colors = (np.asarray(mesh.get("colors", np.full_like(verts, 0.7))).clip(0, 1) * 255).round().astype(np.uint8)
    header = ["ply", "format ascii 1.0", "comment genrl voxel mesh (world units, y up)", f"element vertex {len(verts)}",
              "property float x", "property float y", "property float z", "property uchar red",
              "property uchar green", "property uchar blue", f"element face {len(faces)}",
              "property list uchar int vertex_indices", "end_header"]
    lines = [f"{x:.5g} {y:.5g} {z:.5g} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(verts.tolist(), colors.tolist())]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(header + lines) + "\n")
    os.replace(tmp, path)
    return path


def read_ply(path: str) -> dict:
    """An ASCII PLY triangle mesh (as write_ply writes it) -> {"verts", "faces", "colors"} numpy arrays."""
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != "ply" or "format ascii 1.0" not in lines[1]:
        raise ValueError(f"{path} is not an ASCII PLY file")
    end = lines.index("end_header")
    counts = {ln.split()[1]: int(ln.split()[2]) for ln in lines[:end] if ln.startswith("element")}
    nv, nf = counts.get("vertex", 0), counts.get("face", 0)
    vrows = np.array([ln.split() for ln in lines[end + 1:end + 1 + nv]], dtype=np.float64).reshape(nv, -1)
    frows = np.array([ln.split()[1:4] for ln in lines[end + 1 + nv:end + 1 + nv + nf]], dtype=np.int64).reshape(nf, 3)
    out = {"verts": vrows[:, :3].astype(np.float32), "faces": frows}
    if vrows.shape[1] >= 6:
        out["colors"] = (vrows[:, 3:6] / 255.0).astype(np.float32)
    return out


def save_grid_ply(grid, path: str) -> str:
    """The surface mesh of a voxel grid [4, N, N, N] (occupancy + RGB in [0, 1]) as a PLY file."""
    g = grid.detach().cpu().float().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    return write_ply(path, voxel_mesh(g))


def save_plys(grids, directory: str, name: str = "{:03d}.ply") -> list[int]:
    """A PLY mesh per non-empty grid of `grids` [N, 4, G, G, G] as directory/name.format(i); returns the indices of
    the empty grids (no filled voxel), which get no file."""
    empty = []
    for i, g in enumerate(grids):
        if (g[0] > 0.5).any():
            save_grid_ply(g, os.path.join(directory, name.format(i)))
        else:
            empty.append(i)
    return empty


def save_turntable_grid(grids, captions: list[str], path: str, scores: list[float] | None = None,
                        title: str | None = None, cell: int = 128) -> str:
    """An animated GIF grid of every grid's turntable (12 views, all turning together); returns `path`."""
    from genrl.logging_utils import save_video_grid

    views = torch.stack([render_turntable(g) for g in grids])
    return save_video_grid(views, captions, path, scores, title=title, cell=cell)


def render_turntable(grid, n_views: int = 12, size: int = 96, elevation: float = 25.0) -> torch.Tensor:
    """Views [n_views, 3, size, size] in [0, 1] of a voxel grid on an orbit (azimuth 0 = the front, +z), shaded;
    an empty grid renders as the white background."""
    g = grid.detach().cpu().float().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    mesh = voxel_mesh(g)
    if len(mesh["faces"]) == 0:
        return torch.ones(n_views, 3, size, size)
    cams = orbit_cameras(n_views, elevation=elevation, radius=3.2, fov=40.0, size=size)
    return render_views({k: torch.from_numpy(v) for k, v in mesh.items()}, cams)[0]
