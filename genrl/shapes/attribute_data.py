"""CTRL demo data: shapes-world images labelled by one of the world's exact attribute rules (size or side).

    python -m genrl.shapes.attribute_data --attribute size --out data/shapes-size --num 4000 [--seed 0]
        [--reject-class malformed --generate base --generate runs/shapes-ctrl --num-generated 2000]

Renders train-split prompts with the pretraining renderer (so the images come from the distribution the base
model learned), labels each image with rewards.shapes.attributes.ATTRIBUTES[attribute] (size: mean detected box
side >= 0.31 of the image -> "large"; side: mean box centre x >= 0.5 of the width -> "right"), and writes
OUT/<label>/NNNNN.png plus OUT/labels.jsonl ({"image", "label", "prompt", "source", <attribute>}; the prompt is for
the supervised baseline in benchmarks/ctrl_vs_sft.py). Images without a detected object are skipped.

`--reject-class NAME` adds a class for images that are not well formed (rewards.shapes.attributes.well_formed: no
object, or an object of unknown shape, such as a blob or two merged objects). A classifier trained on renders only
has never seen such images and scores them by their size alone, which is what a fine-tuned model exploits
(docs/ctrl.md). `--generate SOURCE` (repeatable; "base" = `--model`, otherwise a CTRL run or LoRA directory on
top of it) adds `--num-generated` model samples per source, drawn as CTRL trains (`--steps` DDIM steps at eta
`--noise-level`) from train-split prompts, each with a label drawn at random where the source has a condition,
and labelled by the same rules. Deterministic given --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random

import numpy as np


def _label(att, image: np.ndarray, reject: str | None) -> tuple[str | None, float]:
    """(label, measure) of one image from a single detection; `reject` where it is not well formed (if given)."""
    from rewards.shapes.attributes import objects_well_formed
    from rewards.shapes.detect import detect

    objs = detect(image)
    v = att.measure_objects(objs, image.shape[1])
    if reject is not None and not objects_well_formed(objs):
        return reject, v
    return att.label(v), v


def _generated(source: str, model: str, prompts: list[str], seed: int, steps: int, noise_level: float):
    """(images [N, H, W, 3] float in [0, 1], requested labels or None) of `source` for `prompts`."""
    import torch

    from genrl.policies import load_policy
    from genrl.policies.condition import condition_factory, get_condition
    from genrl.rlg import load_rlg_policy
    from genrl.shapes.generate import generate

    policy = load_policy(model).eval() if source == "base" else load_rlg_policy(model, source)
    emb = get_condition(policy.transformer)
    kw = {"steps": steps, "method": "ddim", "noise_level": noise_level}
    if emb is None:
        return generate(policy, prompts, seed=seed, **kw).permute(0, 2, 3, 1).double().numpy(), [None] * len(prompts)
    rng = random.Random(seed)
    want = [rng.choice(emb.labels) for _ in prompts]
    order, parts = [], []
    for k, lab in enumerate(emb.labels):  # one pass per label, each from its own seed
        idx = [i for i, w in enumerate(want) if w == lab]
        if idx:
            order += idx
            parts.append(generate(policy, [prompts[i] for i in idx], seed=seed + 7919 * (k + 1),
                                  velocity_fn_factory=condition_factory(lab), **kw))
    images = torch.cat(parts)[torch.argsort(torch.tensor(order))]
    return images.permute(0, 2, 3, 1).double().numpy(), want


def render_attribute_dataset(out: str, num: int, attribute: str = "size", seed: int = 0, size: int = 32,
                             reject: str | None = None, generate: tuple[str, ...] = (), num_generated: int = 0,
                             model: str = "assets/shapes-base", steps: int = 10, noise_level: float = 1.0) -> dict:
    from PIL import Image

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
    if reject is not None and reject in att.labels:
        raise ValueError(f"--reject-class {reject!r} is one of the {attribute} labels {att.labels}; pick another name")
    if generate and num_generated < 1:
        raise ValueError("--generate needs --num-generated >= 1")
    for src in generate:
        if src != "base" and not os.path.exists(src):
            raise FileNotFoundError(f"--generate {src!r} does not exist; pass 'base' or a CTRL run / LoRA directory")
    rng = random.Random(seed)
    specs = PromptSampler("train", seed=seed).sample(num)
    labels = (*att.labels, reject) if reject is not None else att.labels
    for lab in labels:
        os.makedirs(os.path.join(out, lab), exist_ok=True)
    counts = {"render": dict.fromkeys(labels, 0)}
    with open(os.path.join(out, "labels.jsonl"), "w") as f:

        def write(name: str, image: np.ndarray, prompt: str, source: str, extra: dict) -> None:
            pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)  # label what the PNG holds
            lab, v = _label(att, pixels / 255.0, reject)
            if lab is None:
                return
            rel = os.path.join(lab, name)
            Image.fromarray(pixels).save(os.path.join(out, rel))
            counts[source][lab] += 1
            f.write(json.dumps({"image": rel, "label": lab, "prompt": prompt, "source": source,
                                attribute: None if v != v else round(v, 4), **extra}) + "\n")

        for i, spec in enumerate(specs):
            im = np.asarray(render(spec, size, rng), dtype=np.float64) / 255.0
            write(f"{i:05d}.png", im, spec["prompt"], "render", {})
        for j, src in enumerate(generate):
            counts[src] = dict.fromkeys(labels, 0)
            gspecs = PromptSampler("train", seed=seed + 1000 * (j + 1)).sample(num_generated)
            prompts = [s["prompt"] for s in gspecs]
            images, want = _generated(src, model, prompts, seed + 1000 * (j + 1), steps, noise_level)
            for i, (im, w) in enumerate(zip(images, want)):
                write(f"g{j}_{i:05d}.png", im, prompts[i], src, {} if w is None else {"requested": w})
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attribute", default="size", help="size or side (rewards/shapes/attributes.py)")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=4000, help="rendered images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reject-class", default=None, help="a class for images that are not well formed")
    p.add_argument("--generate", action="append", default=[], help="'base' or a CTRL run/LoRA (repeatable)")
    p.add_argument("--num-generated", type=int, default=0, help="model samples per --generate source")
    p.add_argument("--model", default="assets/shapes-base")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps of the generated samples (CTRL's demo: 10)")
    p.add_argument("--noise-level", type=float, default=1.0, help="DDIM eta of the generated samples (CTRL: 1)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    print(render_attribute_dataset(a.out, a.num, a.attribute, a.seed, reject=a.reject_class,
                                   generate=tuple(a.generate), num_generated=a.num_generated, model=a.model,
                                   steps=a.steps, noise_level=a.noise_level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
