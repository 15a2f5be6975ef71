"""The moving-shapes video world's exact reward: `rewards.load("motion")`.

reward(clips, prompts, metadata=[{"spec": spec}, ...] or None) -> RewardOutput
  clips:   float [N, F, 3, H, W] in [0, 1] (or uint8 [N, F, H, W, 3], or lists of frames; rewards.base.to_video)
  scores:  partial credit (default) or strict 0/1 (`score="strict"`)
  details: "strict", "partial" and each check of score.py ("appearance", "count", "identity", "motion", "speed",
           "smooth") as tensors [N]; "tag" (category per clip)
Every frame goes through the shapes world's detector; tracks link the detections over time (track.py).
Without metadata (or without a "spec" in it) the prompt is parsed with the world's grammar (world.py).
"""

from __future__ import annotations

import numpy as np
import torch

from rewards.base import RewardOutput
from rewards.motion.score import CHECKS, score_clip
from rewards.motion.world import CATEGORIES, DIRECTIONS, MOTIONS, make_spec, parse_prompt, validate_spec
from rewards.registry import register
from rewards.shapes.detect import detect
from rewards.spec_reward import SpecReward


@register("motion")
class MotionReward(SpecReward):
    name = "motion"
    input_format = "video"
    batch_size = 32

    parse = staticmethod(parse_prompt)
    validate = staticmethod(validate_spec)

    def score(self, clips, prompts, metadata) -> RewardOutput:
        frames = clips.permute(0, 1, 3, 4, 2).cpu().numpy().astype(np.float64)  # [N, F, H, W, 3]
        specs = self._specs(prompts, metadata)
        rows = [score_clip([detect(f) for f in clip], spec, clip.shape[1]) for clip, spec in zip(frames, specs)]
        strict = torch.tensor([r["strict"] for r in rows])
        partial = torch.tensor([r["partial"] for r in rows])
        details = {"strict": strict, "partial": partial,
                   **{k: torch.tensor([r["checks"][k] for r in rows]) for k in CHECKS},
                   "tag": [s["tag"] for s in specs]}
        return RewardOutput(strict if self.score_kind == "strict" else partial, details)


__all__ = ["CATEGORIES", "CHECKS", "DIRECTIONS", "MOTIONS", "MotionReward", "make_spec", "parse_prompt",
           "score_clip", "validate_spec"]
