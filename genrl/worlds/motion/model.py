"""The moving-shapes world's text-to-video model: a pixel-space `WanPipeline` directory (genrl/worlds/pixel_wan.py)
denoising the clip itself [B, 3, F, H, W] in [-1, 1] (patch 2 x 4 x 4: 4 x 8 x 8 = 256 tokens for 8 frames of
32 x 32)."""

from __future__ import annotations

from dataclasses import dataclass

from genrl.worlds import pixel_wan
from genrl.worlds.pixel_wan import PixelWanConfig
from rewards.motion.world import WORDS

MAX_TOKENS = 16  # longest prompt: "a video of" + 10 words + BOS/EOS


@dataclass
class MotionModelConfig(PixelWanConfig):
    pass  # the defaults of PixelWanConfig are the motion model's


def build_model(cfg: MotionModelConfig | None = None, seed: int = 0):
    """(transformer, text_encoder, tokenizer) with seeded random weights."""
    return pixel_wan.build_model(cfg or MotionModelConfig(), WORDS, MAX_TOKENS, seed)


def save_pipeline(directory: str, transformer, text_encoder, tokenizer, cfg: MotionModelConfig,
                  extra: dict | None = None) -> None:
    pixel_wan.save_pipeline(directory, transformer, text_encoder, tokenizer, cfg, MAX_TOKENS, extra)
