"""Flow-matching pretraining of the 3D shapes world's model on generated voxel scenes (the recipe of
genrl/worlds/pixel_wan.py): a uniform category, then a uniform train spec (prompts.spec_sampler), one random scene
each (scenes.py), mapped to [-1, 1]."""

from __future__ import annotations

from genrl.shapes.pretrain import PretrainConfig
from genrl.worlds import pixel_wan
from genrl.worlds.shapes3d.model import INDEX_EXTRA, MAX_TOKENS, Shapes3DModelConfig
from genrl.worlds.shapes3d.prompts import spec_sampler
from genrl.worlds.shapes3d.scenes import render_batch
from rewards.shapes3d.world import WORDS


def pretrain(out: str, cfg: PretrainConfig, model_cfg: Shapes3DModelConfig | None = None, log=print) -> dict:
    model_cfg = model_cfg or Shapes3DModelConfig()
    sampler = spec_sampler("train", seed=cfg.seed)
    return pixel_wan.pretrain(
        out, cfg, model_cfg, WORDS, MAX_TOKENS, sampler.sample,
        lambda specs, seed: render_batch(specs, seed, model_cfg.resolution) * 2 - 1, INDEX_EXTRA, log=log)
