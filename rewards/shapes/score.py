"""GenEval-style scoring of detected objects against a shapes-world spec.

Rules (GenEval's, as in DiffusionNFT's gen_eval.py, adapted to a closed world):
  - objects are grouped by detected shape; a clause {"class", "count", "color"?, "position"?} needs exactly
    `count` objects of its class (GenEval strict), all of `color` when given, and, for a position clause, every
    object of the clause must stand in `relation` to every object of the referenced clause, with GenEval's
    relative_position (box-centre offset shrunk by 0.1 * (dimA + dimB) per axis, normalised; |component| > 0.5).
  - closed world: an object of a shape the prompt does not mention (or of unrecognisable shape) fails strict.
Strict (0/1): every clause satisfied and no extra objects.
Partial (the reward Flow-GRPO trains on): mean over clauses of
    count    max(0, 1 - |n - found| / n)
    colour   max(0, 1 - |n - matching| / n) if the count is right else 0
    position 1 if satisfied else 0 (GenEval's half-credit quirk on failure is not reproduced)
times sum(n) / (sum(n) + extra) for `extra` objects of unmentioned (or unknown) shape (closed world).
"""

from __future__ import annotations

import numpy as np

from rewards.shapes.detect import DetectedObject

POSITION_THRESHOLD = 0.1


def relations(a: DetectedObject, b: DetectedObject) -> set[str]:
    """GenEval's relative_position(a, b): the set of relations of a with respect to b."""
    ba, bb = np.array(a.box, float).reshape(2, 2), np.array(b.box, float).reshape(2, 2)
    ca, cb = ba.mean(0), bb.mean(0)
    dim_a, dim_b = ba[1] - ba[0], bb[1] - bb[0]
    offset = ca - cb
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    out = set()
    if dx < -0.5:
        out.add("left of")
    if dx > 0.5:
        out.add("right of")
    if dy < -0.5:
        out.add("above")
    if dy > 0.5:
        out.add("below")
    return out


def score_objects(objects: list[DetectedObject], spec: dict) -> dict:
    """{"strict": 0/1, "partial": [0,1], "clauses": {...}} for one image's detections."""
    inc = spec["include"]
    found = {o["class"]: [d for d in objects if d.shape == o["class"]] for o in inc}
    clauses: dict[str, float] = {}
    ok = True
    count_ok = []
    for i, o in enumerate(inc):
        n, f = o["count"], len(found[o["class"]])
        count_ok.append(n == f)
        clauses[f"count_{i}"] = max(0.0, 1 - abs(n - f) / n)
        ok &= n == f
        if o.get("color"):
            matching = sum(d.color == o["color"] for d in found[o["class"]])
            clauses[f"color_{i}"] = max(0.0, 1 - abs(n - matching) / n) if n == f else 0.0
            ok &= n == f == matching
    for i, o in enumerate(inc):
        if o.get("position"):
            rel, j = o["position"][0], int(o["position"][1])
            good = count_ok[i] and count_ok[j] and all(
                rel in relations(a, b) for a in found[o["class"]] for b in found[inc[j]["class"]]
            )
            clauses[f"position_{i}"] = float(good)
            ok &= good
    extra = len(objects) - sum(len(v) for v in found.values())
    total = sum(o["count"] for o in inc)
    partial = float(np.mean(list(clauses.values()))) * total / (total + extra)
    return {"strict": float(ok and extra == 0), "partial": partial, "clauses": clauses, "extra": extra}


def summarize(tags: list[str], strict, partial) -> dict:
    """GenEval-style report: per-category mean strict/partial and overall = mean over categories."""
    strict, partial = np.asarray(strict, float), np.asarray(partial, float)
    per = {}
    for t in dict.fromkeys(tags):
        sel = np.array([x == t for x in tags])
        per[t] = {"strict": float(strict[sel].mean()), "partial": float(partial[sel].mean()), "n": int(sel.sum())}
    overall = {
        "strict": float(np.mean([v["strict"] for v in per.values()])) if per else 0.0,
        "partial": float(np.mean([v["partial"] for v in per.values()])) if per else 0.0,
        "n": len(tags),
    }
    return {"overall": overall, "per_category": per}
