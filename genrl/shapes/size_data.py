"""CTRL demo data: shapes-world images labelled "small" / "large" by the world's exact size rule.

    python -m genrl.shapes.size_data --out data/shapes-size --num 4000 [--seed 0]

Renders train-split prompts with the pretraining renderer (object sides uniform in 0.26-0.36 of the image, so the
labels come from the same distribution the base model learned), labels each image with
rewards.shapes.size.size_label (mean detected box side >= 0.31 of the image -> "large"), and writes
OUT/<label>/NNNNN.png plus OUT/labels.jsonl ({"image", "label", "prompt", "size"}; the prompt is for the supervised
baseline in benchmarks/ctrl_vs_sft.py). Deterministic given --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random

import numpy as np


def render_size_dataset(out: str, num: int, seed: int = 0, size: int = 32) -> dict:
    from genrl.shapes.prompts import PromptSampler
    from genrl.shapes.render import render
    from rewards.shapes.size import SIZE_LABELS, object_size, size_label

    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out!r} exists and is not empty; pick a new directory")
    if num < 2:
        raise ValueError("--num must be >= 2")
    rng = random.Random(seed)
    specs = PromptSampler("train", seed=seed).sample(num)
    for lab in SIZE_LABELS:
        os.makedirs(os.path.join(out, lab), exist_ok=True)
    counts = dict.fromkeys(SIZE_LABELS, 0)
    with open(os.path.join(out, "labels.jsonl"), "w") as f:
        for i, spec in enumerate(specs):
            im = render(spec, size, rng)
            s = object_size(np.asarray(im, dtype=np.float64) / 255.0)
            lab = size_label(s)
            if lab is None:
                continue
            rel = os.path.join(lab, f"{i:05d}.png")
            im.save(os.path.join(out, rel))
            counts[lab] += 1
            f.write(json.dumps({"image": rel, "label": lab, "prompt": spec["prompt"], "size": round(s, 4)}) + "\n")
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(render_size_dataset(a.out, a.num, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
