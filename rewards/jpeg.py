"""JPEG (in)compressibility from DDPO (Black et al. 2023), as in Flow-GRPO's rewards.py.

    size_kB = len(JPEG(image, quality=95)) / 1000
    jpeg_incompressibility = size_kB            (higher = more detail / noise)
    jpeg_compressibility   = -size_kB / 500     (higher = simpler image; ~0 to -0.1 for 512px images)

Float tensors are quantised with (x*255).round() first. No weights; pure Pillow.
"""

from __future__ import annotations

import io

import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register


def jpeg_size_kb(image, quality: int = 95) -> float:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.tell() / 1000.0


class _Jpeg(Reward):
    input_format = "pil"

    def __init__(self, quality: int = 95, batch_size: int = 64, device=None, dtype=None):
        # device/dtype are accepted for a uniform interface; JPEG encoding runs on the CPU
        self.quality = int(quality)
        self.batch_size = batch_size

    def sizes(self, images) -> torch.Tensor:
        return torch.tensor([jpeg_size_kb(im, self.quality) for im in images], dtype=torch.float32)


@register("jpeg_incompressibility")
class JpegIncompressibility(_Jpeg):
    name = "jpeg_incompressibility"

    def score(self, images, prompts, metadata=None) -> RewardOutput:
        kb = self.sizes(images)
        return RewardOutput(kb, {"size_kb": kb})


@register("jpeg_compressibility")
class JpegCompressibility(_Jpeg):
    name = "jpeg_compressibility"

    def score(self, images, prompts, metadata=None) -> RewardOutput:
        kb = self.sizes(images)
        return RewardOutput(-kb / 500.0, {"size_kb": kb})
