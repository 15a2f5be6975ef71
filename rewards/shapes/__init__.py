"""The shapes world's exact reward: `rewards.load("shapes")`.

reward(images, prompts, metadata=[{"spec": spec}, ...] or None) -> RewardOutput
  scores:  partial credit (default, what Flow-GRPO trains on) or strict 0/1 (`score="strict"`)
  details: "strict", "partial" (tensors [N]), "tag" (category per sample), "objects" (detections per sample)
Without metadata (or without a "spec" in it) the prompt is parsed with the world's grammar (see world.py).
Images: PIL / uint8 arrays / float tensors [N, 3, H, W] in [0, 1], any resolution from ~32 px up.
"""

from __future__ import annotations

import numpy as np
import torch

from rewards.base import RewardOutput
from rewards.registry import register
from rewards.shapes.detect import detect
from rewards.shapes.score import score_objects, summarize
from rewards.shapes.world import (
    CATEGORIES,
    COLORS,
    RELATIONS,
    SHAPES,
    make_spec,
    parse_prompt,
    spec_to_prompt,
    validate_spec,
)
from rewards.spec_reward import SpecReward


@register("shapes")
class ShapesReward(SpecReward):
    name = "shapes"
    input_format = "tensor"
    batch_size = 64

    parse = staticmethod(parse_prompt)
    validate = staticmethod(validate_spec)

    def score(self, samples, prompts, metadata) -> RewardOutput:
        imgs = samples.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        strict, partial, tags, objs = [], [], [], []
        for img, spec in zip(imgs, self._specs(prompts, metadata)):
            found = detect(img)
            r = score_objects(found, spec)
            strict.append(r["strict"])
            partial.append(r["partial"])
            tags.append(spec["tag"])
            objs.append([o.as_dict() for o in found])
        strict_t, partial_t = torch.tensor(strict), torch.tensor(partial)
        return RewardOutput(
            strict_t if self.score_kind == "strict" else partial_t,
            {"strict": strict_t, "partial": partial_t, "tag": tags, "objects": objs},
        )


__all__ = [
    "CATEGORIES",
    "COLORS",
    "RELATIONS",
    "SHAPES",
    "ShapesReward",
    "detect",
    "make_spec",
    "parse_prompt",
    "score_objects",
    "spec_to_prompt",
    "summarize",
    "validate_spec",
]
