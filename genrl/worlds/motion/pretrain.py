"""Flow-matching pretraining of the moving-shapes world's video model on rendered clips (the recipe of
genrl/worlds/pixel_wan.py). Clips are rendered on the fly from the train split: a uniform category, then a uniform
spec (genrl.worlds.motion.prompts.spec_sampler)."""

from __future__ import annotations

from genrl.shapes.pretrain import PretrainConfig
from genrl.worlds import pixel_wan
from genrl.worlds.motion.model import MAX_TOKENS, MotionModelConfig
from genrl.worlds.motion.prompts import spec_sampler
from genrl.worlds.motion.render import render_batch
from rewards.motion.world import WORDS


def pretrain(out: str, cfg: PretrainConfig, model_cfg: MotionModelConfig | None = None, log=print) -> dict:
    model_cfg = model_cfg or MotionModelConfig()
    sampler = spec_sampler("train", seed=cfg.seed)
    return pixel_wan.pretrain(
        out, cfg, model_cfg, WORDS, MAX_TOKENS, sampler.sample,
        lambda specs, seed: render_batch(specs, model_cfg.resolution, model_cfg.frames, seed=seed), log=log)
