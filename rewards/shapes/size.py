"""The shapes world's object-size rule: the exact judge of CTRL's demo condition (small / large objects).

size(image) = mean over the detected objects of (box width + box height) / 2 / image side (detect.py's boxes);
label = "large" if size >= SIZE_THRESHOLD else "small"; no detected object -> no label (never correct).
The renderer draws sides uniformly in 0.26-0.36 of the image, so prompts cannot ask for a size and the base model
draws both: at 32 px, 38% of rendered train-split images measure < 10 px ("small"), 62% >= 10 px ("large")
(600 renders, seed 0); with labels drawn 50/50 independently of the image, any image-blind model scores 0.5.

`rewards.load("shapes_size")(images, prompts, metadata=[{"condition": "small" | "large"}, ...])` -> scores 1/0
(the image's size label equals the requested one), details "size" (float, NaN without objects) and "label".
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register
from rewards.shapes.detect import detect

SIZE_LABELS = ("small", "large")
SIZE_THRESHOLD = 0.31  # fraction of the image side; at 32 px: boxes of >= 10 px are "large"


def object_size(image: np.ndarray) -> float:
    """Mean detected object side / image side of one RGB float [H, W, 3] image in [0, 1]; NaN without objects."""
    objs = detect(image)
    if not objs:
        return float("nan")
    side = image.shape[1]
    return float(np.mean([((o.box[2] - o.box[0]) + (o.box[3] - o.box[1])) / 2 / side for o in objs]))


def size_label(size: float) -> str | None:
    if not math.isfinite(size):
        return None
    return "large" if size >= SIZE_THRESHOLD else "small"


@register("shapes_size")
class ShapesSizeReward(Reward):
    name = "shapes_size"
    input_format = "tensor"
    batch_size = 64

    def score(self, samples, prompts, metadata) -> RewardOutput:
        imgs = samples.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        scores, sizes, labels = [], [], []
        for i, img in enumerate(imgs):
            want = (metadata[i] or {}).get("condition") if metadata is not None else None
            if want not in SIZE_LABELS:
                raise ValueError(f"shapes_size: metadata[{i}] needs 'condition' in {SIZE_LABELS} (the requested size "
                                 f"label), got {want!r}")
            s = object_size(img)
            lab = size_label(s)
            scores.append(float(lab == want))
            sizes.append(s)
            labels.append(lab or "none")
        return RewardOutput(torch.tensor(scores), {"size": torch.tensor(sizes, dtype=torch.float32), "label": labels})
