"""`multiview3d`: reward for text-to-3D RL. Renders each 3D asset from N orbit views (rewards.render3d) and
scores the views with any image reward, as the AR3D-R1 / 3DGen-R1 rewards do on multi-view renders.

Samples are assets, one dict per sample:
    {"points": [P, 3], "colors": [P, 3]?}                    coloured point cloud (disks of `point_size`)
    {"verts": [V, 3], "faces": [F, 3], "colors": [V|F, 3]?}  triangle mesh (per-vertex or per-face colours)
    [4, G, G, G] voxel grid (occupancy + RGB in [0, 1], rewards/shapes3d/geometry.py)  rendered as its voxel surface
(tensors or arrays; colours in [0, 1]; objects with `.vertices` / `.faces` such as trimesh meshes also work).
Prompts and metadata are repeated for every view.

    view_scores[i, k] = image_reward(render(asset_i, camera_k), prompt_i)
    score_i = mean_k view_scores[i, k] - std_weight * std_k view_scores[i, k]
              + consistency_weight * consistency_reward(grid of all views of asset_i, prompt_i)
Default image reward: HPS v2.1 (`hpsv2`), the strongest single reward in AR3D-R1. Defaults: std_weight = 0
and no consistency reward, so score = the mean over views. `details` always holds
"view_mean", "view_std" (cross-view consistency: 0 = all views score alike), "view_min" and "view_scores"
(a list of per-view tensors), and "consistency" when a consistency reward is set (e.g. vlm_judge with
template="consistency3d", the Qwen2.5-VL-style 3D-consistency judge).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rewards.base import Reward, RewardOutput, _check_prompts, concat_outputs
from rewards.registry import load, register
from rewards.render3d import orbit_cameras, render_views
from rewards.shapes3d.geometry import voxel_mesh


def _as_reward(spec, options: dict | None) -> Reward:
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        return load(spec, **(options or {}))
    raise ValueError(f"multiview3d: image_reward must be a reward name or a Reward instance, got {type(spec).__name__}")


def as_asset(sample, i: int = 0) -> dict:
    if isinstance(sample, torch.Tensor | np.ndarray) and sample.ndim == 4 and sample.shape[0] == 4:  # voxel grid
        g = sample.detach().cpu().float().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample,
                                                                                                        np.float32)
        mesh = voxel_mesh(g)
        if len(mesh["faces"]) == 0:
            raise ValueError(f"multiview3d: voxel grid {i} is empty (no occupancy > 0.5); nothing to render")
        return {k: torch.from_numpy(v) for k, v in mesh.items()}
    if hasattr(sample, "vertices") and hasattr(sample, "faces"):  # trimesh-like
        out = {"verts": torch.as_tensor(sample.vertices), "faces": torch.as_tensor(sample.faces)}
        vc = getattr(getattr(sample, "visual", None), "vertex_colors", None)
        if vc is not None:
            out["colors"] = torch.as_tensor(vc)[:, :3].float() / 255.0
        return out
    if not isinstance(sample, dict) or not ({"points"} <= sample.keys() or {"verts", "faces"} <= sample.keys()):
        raise ValueError(
            f"multiview3d: sample {i} must be {{'points': [P,3], 'colors'?}} or {{'verts': [V,3], 'faces': [F,3], "
            f"'colors'?}}, got {type(sample).__name__}"
        )
    key = "points" if "points" in sample else "verts"
    pts = torch.as_tensor(sample[key])
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"multiview3d: sample {i} {key} must have shape [N, 3] with N > 0, got {tuple(pts.shape)}")
    return sample


def grid(images: torch.Tensor) -> torch.Tensor:
    """Tile views [V, 3, H, W] into one image, as square as possible (empty cells white)."""
    v, c, h, w = images.shape
    cols = math.ceil(math.sqrt(v))
    rows = math.ceil(v / cols)
    out = torch.ones(c, rows * h, cols * w, dtype=images.dtype)
    for k in range(v):
        r, q = divmod(k, cols)
        out[:, r * h:(r + 1) * h, q * w:(q + 1) * w] = images[k]
    return out


@register("multiview3d")
class MultiView3D(Reward):
    name = "multiview3d"
    input_format = "asset"

    def __init__(
        self,
        image_reward: str | Reward = "hpsv2",
        image_reward_options: dict | None = None,
        n_views: int = 8,
        elevation: float = 20.0,
        radius: float = 2.5,
        fov: float = 40.0,
        resolution: int = 256,
        point_size: float = 0.01,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        shading: bool = True,
        std_weight: float = 0.0,
        consistency_reward: str | Reward | None = None,
        consistency_reward_options: dict | None = None,
        consistency_weight: float = 0.0,
        batch_size: int = 8,
    ):
        self.image_reward = _as_reward(image_reward, image_reward_options)
        self.consistency_reward = (None if consistency_reward is None
                                   else _as_reward(consistency_reward, consistency_reward_options))
        self.cameras = orbit_cameras(n_views, elevation, radius, fov, resolution)
        self.point_size, self.background, self.shading = float(point_size), tuple(background), bool(shading)
        self.std_weight, self.consistency_weight = float(std_weight), float(consistency_weight)
        self.batch_size = int(batch_size)
        self.name = f"multiview3d[{self.image_reward.name}]"

    def render(self, asset) -> torch.Tensor:
        """Views of one asset: float [n_views, 3, H, W] in [0, 1]."""
        return render_views(as_asset(asset), self.cameras, self.point_size, self.background, self.shading)[0]

    def __call__(self, samples, prompts, metadata=None) -> RewardOutput:
        prompts = _check_prompts(prompts)
        samples = list(samples)
        if len(samples) != len(prompts):
            raise ValueError(f"{self.name}: got {len(samples)} assets but {len(prompts)} prompts; pass one per asset")
        if not samples:
            raise ValueError(f"{self.name}: empty batch; pass at least one asset")
        if metadata is not None and len(metadata) != len(samples):
            raise ValueError(f"{self.name}: metadata has {len(metadata)} entries for {len(samples)} assets")
        outs = []
        for s in range(0, len(samples), self.batch_size):
            sl = slice(s, s + self.batch_size)
            outs.append(self.score(samples[sl], prompts[sl], None if metadata is None else metadata[sl]))
        return concat_outputs(outs)

    def score(self, samples, prompts, metadata) -> RewardOutput:
        views = [self.render(a) for a in samples]  # each [V, 3, H, W]
        v = len(self.cameras)
        flat = torch.cat(views)
        rep_prompts = [p for p in prompts for _ in range(v)]
        rep_meta = None if metadata is None else [m for m in metadata for _ in range(v)]
        per_view = self.image_reward(flat, rep_prompts, rep_meta).scores.reshape(len(samples), v)
        mean = per_view.mean(1)
        std = per_view.std(1, unbiased=False)
        score = mean - self.std_weight * std
        details = {"view_mean": mean, "view_std": std, "view_min": per_view.min(1).values,
                   "view_scores": list(per_view)}
        if self.consistency_reward is not None:
            grids = torch.stack([grid(x) for x in views])
            cons = self.consistency_reward(grids, list(prompts), metadata).scores
            details["consistency"] = cons
            score = score + self.consistency_weight * cons
        return RewardOutput(score, details)
