"""A small pure-torch renderer for scoring 3D assets from several views (CPU or GPU, no extra packages).

Conventions:
- World: y is up; assets are centred near the origin.
- Cameras: pinhole, OpenCV-style camera space (x right, y down, z forward = depth). `orbit_cameras` places N
  cameras on a circle of `radius` at `elevation` degrees, azimuth 360*k/N starting on the +z axis (azimuth 90
  looks from +x), all looking at the origin. Focal length in pixels f = (W/2) / tan(fov/2).
- Pixel (i, j) has its centre at (j + 0.5, i + 0.5); u = f x/z + W/2, v = f y/z + H/2.
- Triangles: edge-function coverage test at pixel centres, z-buffer on 1/z interpolated in screen space
  (exact for planar triangles under perspective), perspective-correct interpolation of vertex colours, two-sided,
  triangles with a vertex closer than `near` are dropped (no clipping). Optional Lambert "headlight" shading:
  colour * (ambient + (1 - ambient) |n . l|), n = face normal, l = direction from the fragment to the camera.
  No antialiasing.
- Points: each point is a disk of world radius `point_size` splatted at its projected radius f*point_size/z;
  the nearest fragment per pixel wins (z-buffer by scatter-reduce). Flat colours.
Output: images [V, 3, H, W] float in [0, 1] over a `background` colour, and alpha masks [V, H, W] (bool).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Camera:
    R: torch.Tensor  # [3, 3] world -> camera rotation (rows: right, down, forward)
    eye: torch.Tensor  # [3] camera position in world coordinates
    focal: float  # pixels
    width: int
    height: int

    def to_camera(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.eye.to(x)) @ self.R.to(x).T

    def project(self, xc: torch.Tensor) -> torch.Tensor:
        """Camera-space points [P, 3] -> pixel coordinates [P, 2] (u right, v down)."""
        z = xc[:, 2:3]
        return torch.cat([self.focal * xc[:, :1] / z + self.width / 2, self.focal * xc[:, 1:2] / z + self.height / 2],
                         dim=1)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    eye, target, up = (torch.as_tensor(v, dtype=torch.float64) for v in (eye, target, up))
    fwd = target - eye
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, up)
    if right.norm() < 1e-8:
        raise ValueError("camera looks along the up axis; use an elevation strictly between -90 and 90 degrees")
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    return torch.stack([right, down, fwd]).float()


def orbit_cameras(n_views: int = 8, elevation: float = 20.0, radius: float = 2.5, fov: float = 40.0,
                  size: int | tuple[int, int] = 256, azimuth_offset: float = 0.0) -> list[Camera]:
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    h, w = (size, size) if isinstance(size, int) else size
    focal = (w / 2) / math.tan(math.radians(fov) / 2)
    el = math.radians(elevation)
    cams = []
    for k in range(n_views):
        az = math.radians(azimuth_offset + 360.0 * k / n_views)
        eye = torch.tensor([radius * math.cos(el) * math.sin(az), radius * math.sin(el),
                            radius * math.cos(el) * math.cos(az)])
        cams.append(Camera(R=look_at(eye), eye=eye.float(), focal=focal, width=w, height=h))
    return cams


def _edge(a, b, p):
    """Twice the signed area of (a, b, p); a, b: [T, 2] -> broadcast with p: [P, 2] -> [T, P]."""
    return (b[:, None, 0] - a[:, None, 0]) * (p[None, :, 1] - a[:, None, 1]) - (b[:, None, 1] - a[:, None, 1]) * (
        p[None, :, 0] - a[:, None, 0])


def rasterize_mesh(verts, faces, colors, cam: Camera, background=(1.0, 1.0, 1.0), shading: bool = True,
                   ambient: float = 0.35, near: float = 1e-3, budget: int = 1 << 22):
    """Render a triangle mesh. verts [V, 3], faces [F, 3] long, colors [V, 3] (per vertex) or [F, 3] (per face)
    in [0, 1]. Returns (image [3, H, W], alpha [H, W]).

    Work is proportional to the triangles' bounding-box areas: triangles are grouped by box size (powers of
    two), each group tests the pixel centres of its boxes, and covered fragments meet in a z-buffer."""
    dev = verts.device
    H, W = cam.height, cam.width
    vc = cam.to_camera(verts.float())
    faces = faces.long()
    uv = cam.project(torch.cat([vc[:, :2], vc[:, 2:].clamp(min=near)], 1))
    inv_z = 1.0 / vc[:, 2].clamp(min=near)
    fid = torch.nonzero((vc[faces, 2] > near).all(1)).flatten()
    f = faces[fid]
    a, b, c = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    # pixel centres (j + 0.5) inside [min, max] of the triangle: j in [ceil(min - .5), floor(max - .5)]
    lo = (torch.minimum(torch.minimum(a, b), c) - 0.5).ceil().clamp(min=0)
    hi = (torch.maximum(torch.maximum(a, b), c) - 0.5).floor()
    hi = torch.stack([hi[:, 0].clamp(max=W - 1), hi[:, 1].clamp(max=H - 1)], 1)
    ext = (hi - lo + 1).clamp(min=0)
    ok = (area.abs() > 1e-12) & (ext > 0).all(1)
    side = ext.max(1).values
    bucket = torch.where(ok, torch.ceil(torch.log2(side.clamp(min=1))), torch.full_like(side, -1)).long()
    frag_pix, frag_iz, frag_tri, frag_col = [], [], [], []
    for bk in torch.unique(bucket).tolist():
        if bk < 0:
            continue
        tris = torch.nonzero(bucket == bk).flatten()
        n = 2**bk
        off = torch.arange(n, device=dev)
        dy, dx = torch.meshgrid(off, off, indexing="ij")
        dx, dy = dx.flatten(), dy.flatten()
        step = max(1, budget // len(dx))
        for s0 in range(0, len(tris), step):
            ids = tris[s0:s0 + step]
            px = lo[ids, 0:1].long() + dx
            py = lo[ids, 1:2].long() + dy
            valid = (px <= hi[ids, 0:1]) & (py <= hi[ids, 1:2])
            ti, ki = torch.nonzero(valid, as_tuple=True)
            t = ids[ti]
            p = torch.stack([px[ti, ki] + 0.5, py[ti, ki] + 0.5], 1).float()
            pa, pb, pc, ar = a[t], b[t], c[t], area[t]
            w0 = ((pc[:, 0] - pb[:, 0]) * (p[:, 1] - pb[:, 1]) - (pc[:, 1] - pb[:, 1]) * (p[:, 0] - pb[:, 0])) / ar
            w1 = ((pa[:, 0] - pc[:, 0]) * (p[:, 1] - pc[:, 1]) - (pa[:, 1] - pc[:, 1]) * (p[:, 0] - pc[:, 0])) / ar
            w2 = 1 - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= -1e-6)
            t, p = t[inside], p[inside]
            w = torch.stack([w0[inside], w1[inside], w2[inside].clamp(min=0)], 1)
            fz = inv_z[f[t]]
            iz = (w * fz).sum(1)
            frag_pix.append(p[:, 1].long() * W + p[:, 0].long())
            frag_iz.append(iz)
            frag_tri.append(t)
            frag_col.append(w * fz / iz[:, None])  # perspective-correct barycentrics
    img = torch.tensor(background, dtype=torch.float32, device=dev).repeat(H * W, 1)
    alpha = torch.zeros(H * W, dtype=torch.bool, device=dev)
    if frag_pix and sum(len(x) for x in frag_pix):
        fp, fiz, ft, fw = torch.cat(frag_pix), torch.cat(frag_iz), torch.cat(frag_tri), torch.cat(frag_col)
        zbest = torch.zeros(H * W, device=dev).scatter_reduce_(0, fp, fiz, reduce="amax")
        win = fiz >= zbest[fp]
        fp, ft, fw = fp[win], ft[win], fw[win]
        face = fid[ft]
        fv = faces[face]
        colors = colors.float().to(dev)
        if colors.shape[0] == faces.shape[0] and colors.shape[0] != verts.shape[0]:
            col = colors[face]
        else:
            col = (fw[:, :, None] * colors[fv]).sum(1)
        if shading:
            v0, v1, v2 = vc[fv[:, 0]], vc[fv[:, 1]], vc[fv[:, 2]]
            nrm = torch.nn.functional.normalize(torch.linalg.cross(v1 - v0, v2 - v0), dim=1)
            pos = fw[:, 0:1] * v0 + fw[:, 1:2] * v1 + fw[:, 2:3] * v2  # fragment position (camera space)
            light = -torch.nn.functional.normalize(pos, dim=1)
            col = col * (ambient + (1 - ambient) * (nrm * light).sum(1).abs())[:, None]
        img[fp] = col.clamp(0, 1)
        alpha[fp] = True
    return img.T.reshape(3, H, W), alpha.reshape(H, W)


def splat_points(points, colors, cam: Camera, point_size: float = 0.01, background=(1.0, 1.0, 1.0),
                 near: float = 1e-3, budget: int = 1 << 23):
    """Render a coloured point cloud (points [P, 3], colors [P, 3] in [0, 1]). Returns (image, alpha)."""
    dev = points.device
    H, W = cam.height, cam.width
    pc = cam.to_camera(points.float())
    keep = pc[:, 2] > near
    pc, colors = pc[keep], colors.float().to(dev)[keep]
    zbuf = torch.full((H * W,), float("inf"), device=dev)
    frag_pix, frag_z, frag_idx = [], [], []
    if len(pc):
        uv = cam.project(pc)
        rad = cam.focal * point_size / pc[:, 2]  # projected radius in pixels
        rmax = int(math.ceil(float(rad.max()))) + 1
        off = torch.arange(-rmax, rmax + 1, device=dev)
        dy, dx = torch.meshgrid(off, off, indexing="ij")
        dx, dy = dx.flatten(), dy.flatten()
        step = max(1, budget // len(dx))
        for s in range(0, len(pc), step):
            u, v, r = uv[s:s + step, 0:1], uv[s:s + step, 1:2], rad[s:s + step, None]
            px, py = u.floor().long() + dx, v.floor().long() + dy  # candidate pixels [p, K]
            d2 = (px + 0.5 - u) ** 2 + (py + 0.5 - v) ** 2
            m = (d2 <= r**2) & (px >= 0) & (px < W) & (py >= 0) & (py < H)
            m |= (px == u.floor().long()) & (py == v.floor().long()) & (px >= 0) & (px < W) & (py >= 0) & (py < H)
            pi, _ = torch.nonzero(m, as_tuple=True)
            frag_pix.append((py * W + px)[m])
            frag_z.append(pc[s:s + step, 2][pi])
            frag_idx.append(pi + s)
    img = torch.tensor(background, dtype=torch.float32, device=dev).repeat(H * W, 1)
    alpha = torch.zeros(H * W, dtype=torch.bool, device=dev)
    if frag_pix and sum(len(f) for f in frag_pix):
        fp, fz, fi = torch.cat(frag_pix), torch.cat(frag_z), torch.cat(frag_idx)
        zbuf.scatter_reduce_(0, fp, fz, reduce="amin")
        win = fz <= zbuf[fp]
        img[fp[win]] = colors[fi[win]].clamp(0, 1)
        alpha[fp[win]] = True
    return img.T.reshape(3, H, W), alpha.reshape(H, W)


def render_views(asset: dict, cameras: list[Camera], point_size: float = 0.01, background=(1.0, 1.0, 1.0),
                 shading: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Render an asset dict from every camera: {"points", "colors"?} or {"verts", "faces", "colors"?}
    (colours default to mid grey). Returns images [V, 3, H, W] and alpha [V, H, W]."""
    imgs, alphas = [], []
    for cam in cameras:
        if "faces" in asset:
            verts = torch.as_tensor(asset["verts"], dtype=torch.float32)
            colors = torch.as_tensor(asset.get("colors", torch.full_like(verts, 0.7)), dtype=torch.float32)
            im, al = rasterize_mesh(verts, torch.as_tensor(asset["faces"]), colors, cam, background, shading)
        else:
            pts = torch.as_tensor(asset["points"], dtype=torch.float32)
            colors = torch.as_tensor(asset.get("colors", torch.full_like(pts, 0.5)), dtype=torch.float32)
            im, al = splat_points(pts, colors, cam, point_size, background)
        imgs.append(im)
        alphas.append(al)
    return torch.stack(imgs), torch.stack(alphas)


# ---- simple primitives (tests, demos, benchmarks) -------------------------------------------------------------------
def cube_mesh(half: float = 0.5, face_colors=None) -> dict:
    """Axis-aligned cube of side 2*half as 12 triangles with one colour per face (+x, -x, +y, -y, +z, -z)."""
    s = half
    quads = [  # outward-facing faces, corners in order
        [(s, -s, -s), (s, s, -s), (s, s, s), (s, -s, s)],
        [(-s, -s, s), (-s, s, s), (-s, s, -s), (-s, -s, -s)],
        [(-s, s, -s), (-s, s, s), (s, s, s), (s, s, -s)],
        [(-s, -s, s), (-s, -s, -s), (s, -s, -s), (s, -s, s)],
        [(-s, -s, s), (s, -s, s), (s, s, s), (-s, s, s)],
        [(s, -s, -s), (-s, -s, -s), (-s, s, -s), (s, s, -s)],
    ]
    face_colors = face_colors or [(1, 0, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (0, 0, 1), (1, 1, 0)]
    verts, faces, colors = [], [], []
    for q, col in zip(quads, face_colors):
        k = len(verts)
        verts += q
        faces += [(k, k + 1, k + 2), (k, k + 2, k + 3)]
        colors += [col, col]
    return {"verts": torch.tensor(verts, dtype=torch.float32), "faces": torch.tensor(faces),
            "colors": torch.tensor(colors, dtype=torch.float32)}


def uv_sphere(radius: float = 0.5, n_lat: int = 32, n_lon: int = 64, color=(0.8, 0.3, 0.2)) -> dict:
    lat = torch.linspace(0, math.pi, n_lat + 1)
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    th, ph = torch.meshgrid(lat, lon, indexing="ij")
    verts = torch.stack([torch.sin(th) * torch.sin(ph), torch.cos(th), torch.sin(th) * torch.cos(ph)], -1)
    verts = (radius * verts).reshape(-1, 3)
    faces = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [(a, c, b), (b, c, d)]
    return {"verts": verts, "faces": torch.tensor(faces), "colors": torch.tensor(color).repeat(len(verts), 1)}


def sphere_points(radius: float = 0.5, n: int = 20000, color=(0.2, 0.4, 0.9)) -> dict:
    """Fibonacci-lattice points on a sphere surface."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    y = 1 - 2 * k / n
    r = torch.sqrt(1 - y**2)
    phi = k * math.pi * (3 - math.sqrt(5))
    pts = torch.stack([r * torch.cos(phi), y, r * torch.sin(phi)], 1).float() * radius
    return {"points": pts, "colors": torch.tensor(color).repeat(n, 1)}
