"""CLIP score: cosine similarity of CLIP image and text embeddings (DiffusionNFT / Flow-GRPO `clip_scorer`).

    score = logits_per_image.diag() / 100 = exp(logit_scale) * cos(e_img, e_txt) / 100

For OpenAI CLIP exp(logit_scale) = 100, so the score is the plain cosine (~0.15-0.40 for matching pairs).
Weights: `openai/clip-vit-large-patch14` (hub id or local directory); text padded to max_length, truncated at 77.
"""

from __future__ import annotations

from rewards._clip import ClipBackbone
from rewards.base import Reward, RewardOutput
from rewards.registry import register

MODEL = "openai/clip-vit-large-patch14"


@register("clip_score")
class ClipScore(Reward):
    name = "clip_score"
    input_format = "pil"

    def __init__(self, model: str = MODEL, processor: str | None = None, *, device=None, dtype=None,
                 batch_size: int = 32, local_files_only: bool = False):
        self.clip = ClipBackbone(model, processor, device=device, dtype=dtype, local_files_only=local_files_only)
        self.batch_size = batch_size

    def score(self, images, prompts, metadata=None) -> RewardOutput:
        cos = (self.clip.image_embeds(images) * self.clip.text_embeds(prompts)).sum(-1).cpu()
        return RewardOutput(self.clip.logit_scale.cpu() * cos / 100.0, {"cosine": cos})
