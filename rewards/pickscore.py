"""PickScore (Kirstain et al. 2023): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic human preferences.

    score = exp(logit_scale) * cos(e_txt, e_img) / 26        (Flow-GRPO / DiffusionNFT, "normalised to ~0-1")
    raw=True:  exp(logit_scale) * cos(e_txt, e_img)            (the published PickScore, ~18-24)

Weights: model `yuvalkirstain/PickScore_v1`, processor `laion/CLIP-ViT-H-14-laion2B-s32B-b79K` (hub ids or local
directories). Text is tokenised with padding=True, truncation at 77 tokens, as the reference scorers do.
"""

from __future__ import annotations

from rewards._clip import ClipBackbone
from rewards.base import Reward, RewardOutput
from rewards.registry import register

MODEL = "yuvalkirstain/PickScore_v1"
PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
NORM = 26.0


@register("pickscore")
class PickScore(Reward):
    name = "pickscore"
    input_format = "pil"

    def __init__(self, model: str = MODEL, processor: str = PROCESSOR, *, raw: bool = False, device=None,
                 dtype=None, batch_size: int = 16, local_files_only: bool = False):
        self.clip = ClipBackbone(model, processor, device=device, dtype=dtype, local_files_only=local_files_only)
        self.raw = bool(raw)
        self.batch_size = batch_size

    def score(self, images, prompts, metadata=None) -> RewardOutput:
        cos = (self.clip.image_embeds(images) * self.clip.text_embeds(prompts, padding=True)).sum(-1).cpu()
        raw = self.clip.logit_scale.cpu() * cos
        return RewardOutput(raw if self.raw else raw / NORM, {"cosine": cos})
