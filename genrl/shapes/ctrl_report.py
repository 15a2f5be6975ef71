"""Before/after report of a CTRL run on a shapes-world condition, size or side (docs/ctrl.md's numbers and grid).

    python -m genrl.shapes.ctrl_report --lora runs/shapes-ctrl --out docs/ctrl_before_after.png \
        --json docs/ctrl_eval.json [--num-prompts 96] [--seed 0] [--steps 20] [--condition-scale W] \
        [--method ddim --noise-level 1]

Every held-out prompt (shapes:eval, `--num-prompts` evenly spaced) is sampled with EVERY label from the same noise
(20-step Euler ODE, no CFG; `--method ddim --noise-level 1` samples as CTRL trains, `--condition-scale W` guides over
the condition with the NULL label as the negative), by the base (LoRA and condition off: "before") and the
fine-tuned model ("after").
Scores: label accuracy by the world's exact rule of the attribute whose labels the condition has
(rewards/shapes/attributes.py) per label and overall, prompt strict / partial accuracy (rewards.load("shapes"),
mean over prompts), the attribute's mean measure (object size or centre x). The grid: 8 prompts as
columns; rows = the base, then one row per label of the fine-tuned model.
"""

from __future__ import annotations

import argparse
import json

import torch


def _base_factory(policy, cond, uncond):
    def fn(x, s):
        with policy.disable_adapter():
            return policy.velocity(x, s, cond)

    return fn


def report(model: str, lora: str, num_prompts: int = 96, seed: int = 0, steps: int = 20,
           condition_scale: float | None = None, method: str = "euler", noise_level: float = 0.0
           ) -> tuple[dict, dict]:
    import rewards
    from genrl.data import load_prompts
    from genrl.policies.condition import condition_factory, get_condition
    from genrl.rlg import load_rlg_policy
    from genrl.shapes.generate import generate
    from rewards.shapes.attributes import attribute_for_labels

    policy = load_rlg_policy(model, lora)
    emb = get_condition(policy.transformer)
    if emb is None:
        raise ValueError(f"{lora} holds no condition embedding (condition.json); pass a CTRL run")
    ps = load_prompts("shapes:eval").subset(num_prompts)
    att = attribute_for_labels(emb.labels)
    shapes, judge = rewards.load("shapes"), rewards.load(f"shapes_{att.name}")
    out, images = {}, {}
    for arm in ("before", "after"):
        for lab in emb.labels:
            fac = _base_factory if arm == "before" else condition_factory(lab, condition_scale=condition_scale)
            if arm == "before" and "before" in images:  # the base ignores the label: one set of images
                imgs = images["before"]
            else:
                imgs = generate(policy, ps.prompts, seed=seed, steps=steps, velocity_fn_factory=fac, method=method,
                                noise_level=noise_level)
            if arm == "before":
                images["before"] = imgs
            else:
                images[lab] = imgs
            meta = [{**m, "condition": lab} for m in ps.metadata]
            s, z = shapes(imgs, ps.prompts, meta), judge(imgs, ps.prompts, meta)
            out[f"{arm}/{lab}"] = {"label_acc": float(z.scores.mean()), "strict": float(s.details["strict"].mean()),
                                   "partial": float(s.details["partial"].mean()),
                                   f"{att.name}_mean": float(torch.nanmean(z.details[att.name]))}
    for arm in ("before", "after"):
        rows = [out[f"{arm}/{lab}"] for lab in emb.labels]
        out[arm] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    out["prompts"], out["labels"], out["seed"], out["steps"] = len(ps), emb.labels, seed, steps
    out["attribute"] = att.name
    out["condition_scale"], out["method"], out["noise_level"] = condition_scale, method, noise_level
    return out, {"images": images, "prompts": ps.prompts}


def grid(images: dict, prompts: list[str], labels: list[str], path: str, cols: int = 8, cell: int = 96) -> str:
    from PIL import Image, ImageDraw

    idx = [int(i * len(prompts) / cols) for i in range(cols)]
    rows = [("before (base)", images["before"])] + [(f"after: {lab}", images[lab]) for lab in labels]
    left, top = 110, 40
    canvas = Image.new("RGB", (left + cols * cell, top + len(rows) * cell), "white")
    d = ImageDraw.Draw(canvas)
    for c, j in enumerate(idx):
        words = prompts[j].replace("a photo of ", "").split()
        d.text((left + c * cell + 2, 2), " ".join(words[:3]), fill="black")
        d.text((left + c * cell + 2, 14), " ".join(words[3:6]), fill="black")
    for r, (name, imgs) in enumerate(rows):
        d.text((4, top + r * cell + cell // 2 - 6), name, fill="black")
        for c, j in enumerate(idx):
            a = (imgs[j].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(a).resize((cell - 4, cell - 4), Image.NEAREST),
                         (left + c * cell + 2, top + r * cell + 2))
    canvas.save(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="assets/shapes-base")
    p.add_argument("--lora", required=True, help="a CTRL run directory or its LoRA directory")
    p.add_argument("--out", required=True, help="the before/after grid PNG")
    p.add_argument("--json", default=None, help="write the numbers here")
    p.add_argument("--num-prompts", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--condition-scale", type=float, default=None,
                   help="guidance over the condition only (negative: same prompt, NULL label); default: none")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--method", default="euler", help="sampler: euler (ODE) or an SDE kind such as ddim")
    p.add_argument("--noise-level", type=float, default=0.0, help="SDE noise level (ddim: eta; CTRL trains at 1)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    res, art = report(a.model, a.lora, a.num_prompts, a.seed, a.steps, condition_scale=a.condition_scale,
                      method=a.method, noise_level=a.noise_level)
    grid(art["images"], art["prompts"], res["labels"], a.out)
    print(json.dumps({k: v for k, v in res.items() if "/" not in k}, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
