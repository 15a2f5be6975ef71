"""CTRL demo data: shapes-world images labelled by one of the world's exact attribute rules (size or side).

    python -m genrl.shapes.attribute_data --attribute size --out data/shapes-size --num 4000 [--seed 0]

Renders train-split prompts with the pretraining renderer (so the images come from the distribution the base
model learned), labels each image with rewards.shapes.attributes.ATTRIBUTES[attribute] (size: mean detected box
side >= 0.31 of the image -> "large"; side: mean box centre x >= 0.5 of the width -> "right"), and writes
OUT/<label>/NNNNN.png plus OUT/labels.jsonl ({"image", "label", "prompt", <attribute>}; the prompt is for the
supervised baseline in benchmarks/ctrl_vs_sft.py). Images without a detected object are skipped.
Deterministic given --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random

import numpy as np


def render_attribute_dataset(out: str, num: int, attribute: str = "size", seed: int = 0, size: int = 32) -> dict:
    from genrl.shapes.prompts import PromptSampler
    from genrl.shapes.render import render
    from rewards.shapes.attributes import ATTRIBUTES

    if attribute not in ATTRIBUTES:
        raise ValueError(f"--attribute {attribute!r} is not one of {sorted(ATTRIBUTES)}")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out!r} exists and is not empty; pick a new directory")
    if num < 2:
        raise ValueError("--num must be >= 2")
    att = ATTRIBUTES[attribute]
    rng = random.Random(seed)
    specs = PromptSampler("train", seed=seed).sample(num)
    for lab in att.labels:
        os.makedirs(os.path.join(out, lab), exist_ok=True)
    counts = dict.fromkeys(att.labels, 0)
    with open(os.path.join(out, "labels.jsonl"), "w") as f:
        for i, spec in enumerate(specs):
            im = render(spec, size, rng)
            v = att.measure(np.asarray(im, dtype=np.float64) / 255.0)
            lab = att.label(v)
            if lab is None:
                continue
            rel = os.path.join(lab, f"{i:05d}.png")
            im.save(os.path.join(out, rel))
            counts[lab] += 1
            f.write(json.dumps({"image": rel, "label": lab, "prompt": spec["prompt"], attribute: round(v, 4)}) + "\n")
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attribute", default="size", help="size or side (rewards/shapes/attributes.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(render_attribute_dataset(a.out, a.num, a.attribute, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
