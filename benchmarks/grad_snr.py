"""Gradient signal-to-noise ratio per image of Flow-GRPO, DiffusionNFT and AWM on the shapes world (issue 18, part 6).

    .venv/bin/python benchmarks/grad_snr.py [--steps 0,1,2,3,4,5] [--set KEY=VALUE ...] [--out benchmarks/grad_snr.md]

For each method's shipped config (configs/shapes/{grpo,nft,awm}.yaml, same seed, same base model) and each rollout
step s = 1..S: the loop's own rollout, reward and advantages for step s, then the gradient g_i of the method's loss
on ONE trained image at a time (all of its yielded terms, exactly as the loop's update on a micro-batch of 1). The
LoRA parameters stay at their initial values, so every step samples the same distribution (the base model, fresh
prompts and noise) and its mean gradient g_s estimates the same expected gradient E g. With N_s images in step s:

    noise per image   V = pooled within-step variance, sum_s sum_i ||g_si - g_s||^2 / sum_s (N_s - 1)
    signal            M = mean over pairs s != s' of <g_s, g_s'>      (unbiased for ||E g||^2: the steps are
                                                                      independent)
    SNR per image     M / V;  a batch of N images has SNR N M / V;  images for a batch SNR of 1 = V / M
                      (with a jackknife-over-steps standard error: what the S steps can resolve)
    step cosine       mean over pairs of cos(g_s, g_s'): how well one step's update predicts another's

Each method is measured on its own signal (its loss's expected gradient); the numbers say how many images per
update that signal needs, not which signal is better.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
METHODS = {"Flow-GRPO": "grpo.yaml", "DiffusionNFT": "nft.yaml", "AWM": "awm.yaml"}


def per_image_grads(tr, step: int) -> tuple[torch.Tensor, dict]:
    """[N, P] flattened gradients of the loop's loss on each trained image of `step`'s rollout, and the step's
    reward statistics."""
    batch, _ = tr.rollout_step(step)
    chosen, info = tr.compute_advantages(batch, step)
    batch.advantages = info.pop("adv")
    # the images the update trains on; with filter_zero_std the loop pads micro-batches with A = 0 fillers,
    # which add nothing to the gradient and are left out here (NFT trains on A = 0 images: they stay in)
    idx = [int(i) for i in chosen if not (tr.cfg.advantage.filter_zero_std and float(batch.advantages[i]) == 0.0)]
    tr.policy.train()
    rows = []
    for k, i in enumerate(idx):
        ctx = tr._ctx(step, salt=1 + k)  # each image's own training draws (timesteps, noise), as a micro-batch
        for p in tr.params:
            p.grad = None
        for loss, _ in tr.algo.losses(tr.policy, batch.select([i]), ctx):
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss on image {i} of step {step}")
            loss.backward()
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                               for p in tr.params]))
    return torch.stack(rows), info


def snr_stats(grads: list[torch.Tensor]) -> dict:
    """Pooled statistics of per-step gradient sets [N_s, P] (see the module docstring)."""
    grads = [g.double() for g in grads]
    means = [g.mean(0) for g in grads]
    noise = sum(float(((g - m) ** 2).sum()) for g, m in zip(grads, means)) / sum(len(g) - 1 for g in grads)
    gram = torch.stack(means) @ torch.stack(means).T  # [S, S] inner products of the step means
    k = len(means)
    off = ~torch.eye(k, dtype=torch.bool)

    def pair_mean(keep: torch.Tensor) -> float:
        m = off & keep[:, None] & keep[None, :]
        return float(gram[m].mean())

    signal = pair_mean(torch.ones(k, dtype=torch.bool))
    # jackknife over steps: the standard error of the signal estimate (the measurement's resolution)
    loo = torch.tensor([pair_mean(torch.arange(k) != s) for s in range(k)])
    signal_se = float(((k - 1) / k * ((loo - loo.mean()) ** 2).sum()).sqrt())
    norms = gram.diagonal().sqrt()
    cos = float((gram / (norms[:, None] * norms[None, :]))[off].mean())
    return {"noise": noise, "signal": signal, "signal_se": signal_se, "snr_image": signal / noise,
            "snr_image_se": signal_se / noise,
            "images_for_snr1": noise / signal if signal > 0 else float("inf"), "step_cos": cos}


def measure(method: str, cfg_file: str, steps: list[int], extra: list[str], tmp: str) -> dict:
    from genrl.config import load_config
    from genrl.loop import Trainer

    cfg = load_config(os.path.join(ROOT, "configs", "shapes", cfg_file),
                      [f"run.dir={os.path.join(tmp, cfg_file)}", "run.threads=1", "checkpoint.every=0",
                       "run.tensorboard=false", *extra])
    tr = Trainer(cfg, progress=False)
    grads, rewards, t = [], [], time.perf_counter()
    for s in steps:
        g, info = per_image_grads(tr, s)
        grads.append(g)
        rewards.append(info["train/reward_mean"])
        print(f"{method} step {s}: {len(g)} trained images, reward {rewards[-1]:.3f}", flush=True)
    n = sum(len(g) for g in grads) / len(grads)
    row = {"method": method, "images": cfg.sample.group_size * cfg.sample.groups_per_step, "trained": n,
           "reward_mean": sum(rewards) / len(rewards), **snr_stats(grads), "seconds": time.perf_counter() - t}
    print(f"{method}: SNR/image {row['snr_image']:.5f} +- {row['snr_image_se']:.5f}, images for SNR 1 "
          f"{row['images_for_snr1']:.0f}, "
          f"step cosine {row['step_cos']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return row


def table(rows: list[dict], steps: int) -> list[str]:
    lines = [f"| method | images per step (trained) | SNR per image (± s.e.) | batch SNR | images for SNR 1 | "
             f"step cosine ({steps} steps) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['images']} ({r['trained']:.0f}) | "
                     f"{r['snr_image']:.5f} ± {r['snr_image_se']:.5f} | "
                     f"{r['snr_image'] * r['trained']:.3f} | {r['images_for_snr1']:.0f} | {r['step_cos']:.3f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="0,1,2,3,4,5", help="rollout steps measured (each its own prompts and noise)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--set", nargs="*", default=[], help="config overrides for every method")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps = [int(s) for s in a.steps.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="genrl-snr-") as tmp:
        for m in a.methods.split(","):
            rows.append(measure(m, METHODS[m], steps, a.set, tmp))
    lines = table(rows, len(steps))
    print("\n".join(lines))
    if a.out:
        with open(a.out, "a") as f:
            f.write(f"\n`benchmarks/grad_snr.py --steps {a.steps} --methods {a.methods}"
                    + (f" --set {' '.join(a.set)}" if a.set else "")
                    + f"` ({platform.machine()}, torch {torch.__version__}, 1 thread)\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
