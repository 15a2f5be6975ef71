"""The 3D shapes world's text-to-3D model: a pixel-space `WanPipeline` directory (genrl/worlds/pixel_wan.py) whose
samples are voxel grids. The Wan transformer's [B, C, F, H, W] is the grid [B, 4, X, Y, Z] (occupancy + RGB mapped
to [-1, 1]; x plays the role of frames), patch 4 x 4 x 4: 4^3 = 64 tokens for a 16^3 grid. model_index.json adds
"genrl_family": "voxel3d" (load_policy picks genrl.policies.voxel3d) and "genrl_world": "shapes3d"."""

from __future__ import annotations

from dataclasses import dataclass

from genrl.worlds import pixel_wan
from genrl.worlds.pixel_wan import PixelWanConfig
from rewards.shapes3d.world import WORDS

MAX_TOKENS = 12  # longest prompt: "a purple cylinder in front of a yellow sphere" (9 words) + BOS/EOS
INDEX_EXTRA = {"genrl_family": "voxel3d", "genrl_world": "shapes3d"}


@dataclass
class Shapes3DModelConfig(PixelWanConfig):
    resolution: int = 16
    frames: int = 16
    channels: int = 4
    patch_t: int = 4
    patch_s: int = 4
    num_layers: int = 6
    ffn_dim: int = 256


def build_model(cfg: Shapes3DModelConfig | None = None, seed: int = 0):
    return pixel_wan.build_model(cfg or Shapes3DModelConfig(), WORDS, MAX_TOKENS, seed)


def save_pipeline(directory: str, transformer, text_encoder, tokenizer, cfg: Shapes3DModelConfig,
                  extra: dict | None = None) -> None:
    pixel_wan.save_pipeline(directory, transformer, text_encoder, tokenizer, cfg, MAX_TOKENS,
                            {"prediction": "x0", **INDEX_EXTRA, **(extra or {})})
