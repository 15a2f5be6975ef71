"""GenEval's rule engine as pure functions of detections (no models here; see rewards.geneval for the detector).

Follows GenEval (`evaluation/evaluate_images.py`) and the Flow-GRPO / DiffusionNFT reward server
(`gen_eval.py`, reward-server `evaluate_reward`):

- filtering: keep detections with score > THRESHOLD (0.3), or > COUNTING_THRESHOLD (0.9) when the prompt's
  tag is "counting"; sort by score and keep at most MAX_OBJECTS (16) per class; NMS is off (threshold 1.0).
- position: `relative_position(A, B)` shrinks the centre offset A-B by POSITION_THRESHOLD * (dimA + dimB) per
  axis, divides by |offset| and reads "left of"/"right of"/"above"/"below" from components beyond +-0.5.
- colour: the class's masked crop is classified among COLORS by CLIP (done by the caller through a
  `classify(classname, objects) -> list[str]` callable; default: each Detection's `.color`).

Three verdicts per image (metadata = {"tag", "include": [{"class", "count", "color"?, "position"?}],
"exclude": [{"class", "count"}]}):
- `official` (GenEval accuracy): for each include clause the top-`count` objects must exist (count >= n), have
  the colour, and stand in the relation to *every* object of the referenced group; exclude clauses need
  fewer than `count` objects of that class.
- `strict` (Flow-GRPO's strict_accuracy): exact counts (all detections of the class), then the same colour and
  position checks on all of them, plus the exclude clauses.
- `score` (the partial-credit reward Flow-GRPO trains on): the mean of per-clause rewards, count
  `1 - |n - found| / n` (may go negative when found > 2n, as published), colour `1 - |n - #right colour| / n`
  (0 if the count was wrong), position 0/1. Quirk kept from the published code: a failed position check
  appends 0.0 and then 1.0, so a position failure earns half credit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0  # 1.0 = off, as in GenEval
POSITION_THRESHOLD = 0.1
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COLOR_TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
RELATIONS = ("left of", "right of", "above", "below")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

# GenEval's object_names.txt: the 80 COCO classes in detector index order (a few renamed from COCO/mmdet:
# "computer mouse", "tv remote", "computer keyboard").
OBJECT_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass
class Detection:
    """One detected instance: box [x1, y1, x2, y2] in pixels, confidence, optional HxW bool mask and colour."""

    box: Sequence[float]
    score: float
    mask: np.ndarray | None = None
    color: str | None = None


@dataclass
class Verdict:
    official: bool
    strict: bool
    score: float
    reasons: list[str] = field(default_factory=list)


Objects = dict[str, list[Detection]]
ColorFn = Callable[[str, list[Detection]], list[str]]


def _attr_colors(classname: str, objects: list[Detection]) -> list[str]:
    return [o.color for o in objects]


def filter_detections(
    raw: Objects,
    tag: str | None,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
) -> Objects:
    """Per class: score > threshold (counting prompts: > counting_threshold), sorted by score, at most
    max_objects. Classes with no surviving detection are dropped (as GenEval does)."""
    thr = counting_threshold if tag == "counting" else threshold
    out: Objects = {}
    for cls, dets in raw.items():
        kept = sorted((d for d in dets if d.score > thr), key=lambda d: -d.score)[:max_objects]
        if kept:
            out[cls] = kept
    return out


def relative_position(a: Detection, b: Detection, margin: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of A relative to B (image coordinates: y grows downwards), factoring in object sizes."""
    boxes = np.array([list(a.box)[:4], list(b.box)[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - margin * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rel = set()
    if dx < -0.5:
        rel.add("left of")
    if dx > 0.5:
        rel.add("right of")
    if dy < -0.5:
        rel.add("above")
    if dy > 0.5:
        rel.add("below")
    return rel


def check_metadata(meta: dict) -> None:
    """Raise ValueError with a one-line hint when a sample's metadata is not in GenEval's format."""
    if not isinstance(meta, dict) or not isinstance(meta.get("include", None), list):
        raise ValueError(
            "geneval metadata must be a dict like {'tag': 'counting', 'include': [{'class': 'cat', 'count': 2}], "
            f"'exclude': [...]}} (GenEval's evaluation_metadata.jsonl), got {str(meta)[:120]}"
        )
    for i, req in enumerate(list(meta["include"]) + list(meta.get("exclude", []))):
        if not isinstance(req, dict) or "class" not in req or int(req.get("count", 0)) < 1:
            raise ValueError(f"geneval metadata clause {i} needs 'class' and a positive 'count', got {req!r}")
        if "color" in req and req["color"] not in COLORS:
            raise ValueError(f"geneval colour {req['color']!r} is not one of {', '.join(COLORS)}")
        if "position" in req:
            pos = req["position"]
            if not (isinstance(pos, (list, tuple)) and len(pos) == 2 and pos[0] in RELATIONS):
                raise ValueError(f"geneval position must be [relation, group_index] with relation in {RELATIONS}")
            if not 0 <= int(pos[1]) < i:
                raise ValueError(f"geneval position of clause {i} refers to group {pos[1]}, which is not earlier")


def _position_ok(found, group, expected, margin) -> bool:
    for obj in found:
        for target in group:
            if expected not in relative_position(obj, target, margin):
                return False
    return True


def evaluate_official(
    objects: Objects, meta: dict, classify: ColorFn = _attr_colors, margin: float = POSITION_THRESHOLD
) -> tuple[bool, list[str]]:
    """GenEval's `evaluate`: counts are lower bounds on the top-n objects; excludes are upper bounds."""
    correct, reasons, groups = True, [], []
    for req in meta.get("include", []):
        cls, n = req["class"], int(req["count"])
        matched = True
        found = objects.get(cls, [])[:n]
        if len(found) < n:
            correct = matched = False
            reasons.append(f"expected {cls}>={n}, found {len(found)}")
        else:
            if "color" in req:
                colors = classify(cls, found)
                if colors.count(req["color"]) < n:
                    correct = matched = False
                    reasons.append(f"expected {req['color']} {cls}>={n}, found {colors.count(req['color'])}")
            if "position" in req and matched:
                rel, gi = req["position"]
                if groups[gi] is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {rel}")
                elif not _position_ok(found, groups[gi], rel, margin):
                    correct = matched = False
                    reasons.append(f"expected {cls} {rel} target")
        groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        cls, n = req["class"], int(req["count"])
        if len(objects.get(cls, [])) >= n:
            correct = False
            reasons.append(f"expected {cls}<{n}, found {len(objects.get(cls, []))}")
    return correct, reasons


def evaluate_reward(
    objects: Objects, meta: dict, classify: ColorFn = _attr_colors, margin: float = POSITION_THRESHOLD
) -> tuple[bool, float, list[str]]:
    """Flow-GRPO's reward-server rules: (strict_correct, partial-credit score, reasons)."""
    strict, reasons, rewards, groups = True, [], [], []
    for req in meta.get("include", []):
        cls, n = req["class"], int(req["count"])
        matched = True
        found = objects.get(cls, [])
        rewards.append(1 - abs(n - len(found)) / n)
        if len(found) != n:
            strict = matched = False
            reasons.append(f"expected {cls}=={n}, found {len(found)}")
            if "color" in req or "position" in req:
                rewards.append(0.0)
        else:
            if "color" in req:
                k = classify(cls, found).count(req["color"])
                rewards.append(1 - abs(n - k) / n)
                if k != n:
                    strict = matched = False
                    reasons.append(f"expected {req['color']} {cls}=={n}, found {k}")
            if "position" in req and matched:
                rel, gi = req["position"]
                if groups[gi] is None:
                    strict = matched = False
                    reasons.append(f"no target for {cls} to be {rel}")
                    rewards.append(0.0)
                else:
                    if not _position_ok(found, groups[gi], rel, margin):
                        strict = matched = False
                        reasons.append(f"expected {cls} {rel} target")
                        rewards.append(0.0)
                    rewards.append(1.0)  # published quirk: appended after a failure too (half credit)
        groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        cls, n = req["class"], int(req["count"])
        if len(objects.get(cls, [])) >= n:
            strict = False
            reasons.append(f"expected {cls}<{n}, found {len(objects.get(cls, []))}")
    score = sum(rewards) / len(rewards) if rewards else 0.0
    return strict, float(score), reasons


def judge(
    raw: Objects,
    meta: dict,
    classify: ColorFn = _attr_colors,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    margin: float = POSITION_THRESHOLD,
) -> Verdict:
    """Filter raw detections with GenEval's thresholds and return all three verdicts for one image."""
    check_metadata(meta)
    objects = filter_detections(raw, meta.get("tag"), threshold, counting_threshold, max_objects)
    cache: dict[tuple[str, int], list[str]] = {}

    def cached(cls, objs):  # both rule sets ask for prefixes of the same sorted list: classify each once
        key = (cls, len(objs))
        if key not in cache:
            cache[key] = list(classify(cls, objs))
        return cache[key]

    official, r1 = evaluate_official(objects, meta, cached, margin)
    strict, score, r2 = evaluate_reward(objects, meta, cached, margin)
    return Verdict(official=official, strict=strict, score=score, reasons=r2 or r1)


def summarize(tags: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """GenEval's report: mean per tag, and "overall" = the mean of the per-tag means (tasks weigh equally)."""
    if len(tags) != len(values) or not tags:
        raise ValueError(f"summarize needs one value per tag and at least one, got {len(tags)} and {len(values)}")
    per: dict[str, list[float]] = {}
    for t, v in zip(tags, values):
        per.setdefault(t, []).append(float(v))
    out = {t: sum(v) / len(v) for t, v in sorted(per.items())}
    out["overall"] = sum(out.values()) / len(out)
    return out
