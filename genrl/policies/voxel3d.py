"""3D adapter: a pixel-space `WanPipeline` whose samples are voxel grids (the 3D shapes world's model,
genrl/worlds/shapes3d/model.py), as a FlowPolicy. Picked by load_policy from `"genrl_family": "voxel3d"` in
model_index.json; loading, text encoding, LoRA and saving are WanPolicy's (genrl/policies/wan.py).

Time convention: genrl's (t = 1 noise, x_t = (1 - t) x0 + t eps, v = eps - x0). Samples x are [B, 4, G, G, G]: the
grid (occupancy, R, G, B) mapped to [-1, 1], axes x, y (up), z; the Wan transformer treats x as its frame axis.
`decode(x)` returns grids [B, 4, G, G, G] in [0, 1] (what rewards.shapes3d and rewards.multiview3d take); samples are
shown as turntable GIFs and exported as PLY meshes (genrl/worlds/shapes3d/export.py).
"""

from __future__ import annotations

import torch

from genrl.policies.wan import WanPolicy


class VoxelPolicy(WanPolicy):
    sample_format = "voxels"

    def __init__(self, pipe, index: dict, **options):
        if not index.get("genrl_pixel_space"):
            raise ValueError("a voxel3d model must be pixel-space (\"genrl_pixel_space\": true in model_index.json)")
        super().__init__(pipe, index, **options)
        self.world = index.get("genrl_world")
        if not (self.height == self.width == self.num_frames):
            raise ValueError(f"a voxel3d model needs a cubic grid, got {self.num_frames}x{self.height}x{self.width}")
        if self.transformer.config.in_channels != 4:
            raise ValueError(f"a voxel3d model has 4 channels (occupancy + RGB), got "
                             f"{self.transformer.config.in_channels}")

    def _check_geometry(self, height: int, width: int, frames: int) -> None:
        patch = self.transformer.config.patch_size
        for side, p in zip((frames, height, width), patch):
            if side < 1 or side % p:
                raise ValueError(f"grid side {side} is not a multiple of the model's patch size {p}; use a grid of "
                                 f"{p * max(1, round(side / p))}")

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Grids [B, 4, G, G, G] in [0, 1]."""
        return (x.float() / 2 + 0.5).clamp(0, 1)

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        """[B, 4, G, G, G] (`resolution` sets the grid side G; it must fit the patch size)."""
        g = int(resolution or self.height)
        self._check_geometry(g, g, g)
        return (batch, 4, g, g, g)

    def save_samples(self, outputs: list[torch.Tensor], captions: list[str], stem: str,
                     scores: list[float] | None = None, title: str | None = None) -> str:
        """A turntable GIF grid (`stem`.gif, 12 views per asset) and a PLY mesh per asset (`stem`_plys/)."""
        from genrl.worlds.shapes3d.export import save_plys, save_turntable_grid

        save_plys(outputs, stem + "_plys")
        return save_turntable_grid(outputs, captions, stem + ".gif", scores, title=title)

    def metadata_for(self, prompts: list[str]):
        """[{"spec": ...}] for prompts of the 3D shapes world's grammar; None if any prompt is outside it."""
        from rewards.shapes3d.world import parse_prompt

        try:
            return [{"spec": parse_prompt(p)} for p in prompts]
        except ValueError:
            return None
