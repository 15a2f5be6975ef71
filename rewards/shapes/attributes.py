"""The shapes world's image attributes that prompts cannot ask for: the exact judges of CTRL's demo conditions.

Each attribute is a measure of the detected objects (detect.py's boxes) and a threshold on it:
  size: mean over objects of (box width + box height) / 2 / image side; "large" if >= SIZE_THRESHOLD else "small".
        The renderer draws sides uniformly in 0.26-0.36 of the image: at 32 px, 38% of rendered train-split images
        measure < 10 px ("small"), 62% >= 10 px ("large") (600 renders, seed 0).
  side: mean over objects of the box centre's x / image width (0 = left edge); "left" if < 0.5 else "right".
        The renderer places objects uniformly, so renders split 49% / 51% (4000 train-split renders, seed 0).
No detected object -> no label (never correct). With labels requested 50/50 independently of the image, any
image-blind model scores 0.5 on either attribute. `well_formed` (an object, and every object of a known shape) is
the rule behind the optional reject class of CTRL's classifier data (genrl.shapes.attribute_data --reject-class).

`rewards.load("shapes_size")` / `rewards.load("shapes_side")`(images, prompts, metadata=[{"condition": label}, ...])
-> scores 1/0 (the image's label equals the requested one), details <attribute> (the measure, NaN without objects)
and "label".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register
from rewards.shapes.detect import detect

SIZE_THRESHOLD = 0.31  # fraction of the image side; at 32 px: boxes of >= 10 px are "large"


def _mean_over_boxes(objs: list, side: int, value: Callable[[tuple, int], float]) -> float:
    """Mean of value(box, image side) over detected objects; NaN without any."""
    if not objs:
        return float("nan")
    return float(np.mean([value(o.box, side) for o in objs]))


def _size_of(objs: list, side: int) -> float:
    return _mean_over_boxes(objs, side, lambda b, w: ((b[2] - b[0]) + (b[3] - b[1])) / 2 / w)


def _centre_x_of(objs: list, side: int) -> float:
    return _mean_over_boxes(objs, side, lambda b, w: (b[0] + b[2]) / 2 / w)


def objects_well_formed(objs: list) -> bool:
    """At least one object, and every object has a known shape (detect.py's template fit)."""
    return bool(objs) and all(o.shape != "unknown" for o in objs)


def object_size(image: np.ndarray) -> float:
    """Mean detected object side / image side of one RGB float [H, W, 3] image in [0, 1]; NaN without objects."""
    return _size_of(detect(image), image.shape[1])


def object_side(image: np.ndarray) -> float:
    """Mean detected box centre x / image width of one RGB float [H, W, 3] image; NaN without objects."""
    return _centre_x_of(detect(image), image.shape[1])


def well_formed(image: np.ndarray) -> bool:
    """objects_well_formed of one RGB float [H, W, 3] image's detected objects."""
    return objects_well_formed(detect(image))


@dataclass(frozen=True)
class Attribute:
    name: str
    labels: tuple[str, str]  # (below the threshold, at or above it)
    measure_objects: Callable[[list, int], float]  # (detected objects, image side) -> the measure
    threshold: float

    def measure(self, image: np.ndarray) -> float:
        """The measure of one RGB float [H, W, 3] image; NaN without objects."""
        return self.measure_objects(detect(image), image.shape[1])

    def label(self, value: float) -> str | None:
        if not math.isfinite(value):
            return None
        return self.labels[int(value >= self.threshold)]


ATTRIBUTES = {
    "size": Attribute("size", ("small", "large"), _size_of, SIZE_THRESHOLD),
    "side": Attribute("side", ("left", "right"), _centre_x_of, 0.5),
}


def attribute_for_labels(labels) -> Attribute:
    """The attribute whose label set equals `labels` (a CTRL condition's labels, any order)."""
    for a in ATTRIBUTES.values():
        if set(a.labels) == set(labels):
            return a
    raise ValueError(f"no shapes-world attribute has the labels {sorted(labels)}; known: "
                     + ", ".join(f"{a.name} {list(a.labels)}" for a in ATTRIBUTES.values()))


class _AttributeReward(Reward):
    input_format = "tensor"
    batch_size = 64
    attribute: Attribute

    def score(self, samples, prompts, metadata) -> RewardOutput:
        att = self.attribute
        imgs = samples.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        scores, values, labels = [], [], []
        for i, img in enumerate(imgs):
            want = (metadata[i] or {}).get("condition") if metadata is not None else None
            if want not in att.labels:
                raise ValueError(f"{self.name}: metadata[{i}] needs 'condition' in {att.labels} (the requested "
                                 f"{att.name} label), got {want!r}")
            v = att.measure(img)
            lab = att.label(v)
            scores.append(float(lab == want))
            values.append(v)
            labels.append(lab or "none")
        return RewardOutput(torch.tensor(scores), {att.name: torch.tensor(values, dtype=torch.float32),
                                                   "label": labels})


@register("shapes_size")
class ShapesSizeReward(_AttributeReward):
    name = "shapes_size"
    attribute = ATTRIBUTES["size"]


@register("shapes_side")
class ShapesSideReward(_AttributeReward):
    name = "shapes_side"
    attribute = ATTRIBUTES["side"]
