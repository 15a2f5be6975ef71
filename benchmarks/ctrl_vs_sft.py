"""CTRL against supervised fine-tuning with the label (the paper's comparison) on a shapes-world attribute (size).

    python benchmarks/ctrl_vs_sft.py [--ctrl-run DIR] [--sft-steps 300] [--data data/shapes-size]

Both arms train the same LoRA (rank 4) + zero-initialised condition embedding of assets/shapes-base with the same
two AdamW groups (LoRA 1e-3, embedding 5e-2, wd 0.1, clip 5) and are evaluated identically (CTRL.eval_outputs: 96
held-out prompts, one label per prompt drawn from its seed, 20-step Euler ODE, fixed seeds; label accuracy by the
world's exact size rule, prompt strict accuracy by the shapes reward):
  * CTRL: configs/shapes/ctrl.yaml (classifier trained on the labelled dataset's 80% split; reward back-propagated
    through 10 DDIM-eta-1 steps, KL to the base). "images" = generated samples.
  * SFT: flow matching on the labelled dataset's images with their prompts and labels (10% labels dropped to NULL,
    t = lo + (1 - lo) * sigmoid(N(0, 1)) with lo = max(0.05, algorithm.tuned_min_sigma), so SFT trains the same
    noisy-step range CTRL tunes and samples with the base below it; the base's pretraining loss: MSE between the
    implied and the true velocity). "images" = dataset images seen (with repetition).
Writes benchmarks/ctrl_vs_sft.json and benchmarks/ctrl_vs_sft_results.md (label accuracy against images and wall-clock).
--ctrl-run reuses a finished run of configs/shapes/ctrl.yaml (e.g. the demo) instead of training CTRL again;
--sft-run likewise for the SFT arm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genrl.algorithms import Batch, register_algorithm  # noqa: E402
from genrl.algorithms.ctrl import CTRL, CTRLConfig  # noqa: E402
from genrl.policies.condition import get_condition  # noqa: E402
from rewards.shapes.attributes import ATTRIBUTES  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class SFTConfig(CTRLConfig):
    name: str = "ctrl_sft"
    data: str = ""  # labelled dataset (folder or jsonl with "prompt" per image)
    label_dropout: float = 0.1


@register_algorithm("ctrl_sft")
class LabelSFT(CTRL):
    """Supervised flow matching with the label (benchmark baseline; shares CTRL's model set-up and evaluation)."""

    Config = SFTConfig

    def __init__(self, config, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        from genrl.classifier import list_dataset, load_dataset

        jsonl = os.path.join(config.data, "labels.jsonl") if os.path.isdir(config.data) else config.data
        self.data = load_dataset(jsonl, 32, self.labels)
        self.prompts = [r.get("prompt", "") for r in list_dataset(jsonl)]

    def rollout(self, policy, prompts, groups, ctx):
        n = len(prompts)
        idx = torch.randint(len(self.prompts), (n,), generator=ctx.generator)
        ps = [self.prompts[i] for i in idx.tolist()]
        return Batch(prompts=ps, group=groups.clone(), cond=policy.encode(ps), x0=self.data.images[idx] * 2 - 1,
                     labels=self.data.targets[idx], rewards=torch.zeros(n))

    def loss(self, policy, mb, ctx):
        x0 = mb.x0.to(ctx.device)
        b = x0.shape[0]
        lo = max(0.05, get_condition(policy.transformer).min_sigma)  # CTRL's tuned range (the base below)
        t = (lo + (1 - lo) * torch.sigmoid(torch.randn(b, generator=ctx.generator))).to(ctx.device)
        eps = torch.randn(x0.shape, generator=ctx.generator).to(ctx.device)
        tb = t.view(-1, 1, 1, 1)
        y = mb.labels.clone()
        drop = torch.rand(b, generator=ctx.generator) < self.config.label_dropout
        y[drop] = get_condition(policy.transformer).null_id
        cond = {**{k: v.to(ctx.device) for k, v in mb.cond.items()}, "condition": y.to(ctx.device)}
        v = policy.velocity((1 - tb) * x0 + tb * eps, t, cond)
        loss = ((v.float() - (eps - x0)) ** 2).mean()
        return loss, {"loss": loss.item()}


def run_arm(overrides: list[str]) -> str:
    from genrl.config import load_config
    from genrl.loop import train

    cfg = load_config(os.path.join(os.path.dirname(HERE), "configs", "shapes", "ctrl.yaml"), overrides)
    train(cfg, progress=False)
    return cfg.run.dir


def curve(run_dir: str) -> list[dict]:
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    seen = {r["step"]: r.get("samples_seen", 0) for r in rows if "samples_seen" in r}
    out = []
    for r in rows:
        key = next((f"eval/shapes_{a}" for a in ATTRIBUTES if f"eval/shapes_{a}" in r), None)
        if key:
            out.append({"step": r["step"], "images": seen.get(r["step"], 0), "wall_min": r["wall_time"] / 60,
                        "label_acc": r[key], "strict": r["eval/shapes/strict"],
                        "p_classifier": r.get("eval/classifier")})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ctrl-run", default=None, help="a finished run of configs/shapes/ctrl.yaml to reuse")
    p.add_argument("--sft-run", default=None, help="a finished SFT arm (runs/ctrl_vs_sft/sft) to reuse")
    p.add_argument("--data", default="data/shapes-size", help="the labelled dataset (genrl.shapes.attribute_data)")
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--sft-eval-every", type=int, default=50)
    p.add_argument("--root", default="runs/ctrl_vs_sft")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not os.path.exists(a.data):
        raise SystemExit(
            f"--data {a.data} not found; render it: "
            f"python -m genrl.shapes.attribute_data --attribute size --out {a.data}"
        )
    ctrl_dir = a.ctrl_run or run_arm([f"run.dir={a.root}/ctrl", f"run.threads={a.threads}"])
    sft_dir = a.sft_run or run_arm([f"run.dir={a.root}/sft", f"run.threads={a.threads}", "algorithm.name=ctrl_sft",
                       f"algorithm.data={a.data}", f"train.steps={a.sft_steps}", f"eval.every={a.sft_eval_every}",
                       f"checkpoint.every={a.sft_steps}"])
    res = {"ctrl": curve(ctrl_dir), "sft": curve(sft_dir), "ctrl_run": ctrl_dir, "sft_run": sft_dir,
           "threads": a.threads}
    with open(os.path.join(HERE, "ctrl_vs_sft.json"), "w") as f:
        json.dump(res, f, indent=2)
    lines = ["| method | step | images | wall-clock (min) | label accuracy (exact rule) | prompt strict |",
             "|---|---|---|---|---|---|"]
    for arm in ("ctrl", "sft"):
        for r in res[arm]:
            lines.append(f"| {arm.upper()} | {r['step']} | {r['images']} | {r['wall_min']:.1f} | "
                         f"{r['label_acc']:.3f} | {r['strict']:.3f} |")
    with open(os.path.join(HERE, "ctrl_vs_sft_results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
