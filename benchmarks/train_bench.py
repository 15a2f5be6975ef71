"""Overhead of the training loop over the bare model work, on the shapes model (CPU).

    .venv/bin/python benchmarks/train_bench.py [--model assets/shapes-base] [--repeats 7] [--out benchmarks/train.md]

1. Rollout: `algorithm.rollout` for one batch (conditioning, noise, the Flow-GRPO SDE sampler recording the
   trajectory and per-step log-probs, decode) against the bare model: `sample.steps` no-grad velocity forwards
   on the same batch. Target ratio <= 1.05.
2. Training step: `Trainer.train_step` on one micro-batch (Flow-GRPO losses over the trained timesteps: the
   reference forward for the KL, the grad forward, SDE log-prob, PPO-clip, one backward per timestep, gradient
   clipping, AdamW, EMA) against the bare work: the same reference forwards + forward/backward pairs with a
   plain mean-square loss, and nothing else. Target ratio <= 1.15.
A and B are interleaved and the median of `--repeats` is reported (the machine may be shared).
Reward time is reported separately (it is the reward model's cost, not the loop's).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from markdown_out import publish  # noqa: E402


def _model(path: str | None, tmp: str) -> tuple[str, str]:
    if path and os.path.isfile(os.path.join(path, "model_index.json")):
        return path, path
    from genrl.shapes.model import ShapesModelConfig, build_model, save_pipeline

    out = os.path.join(tmp, "shapes-random")
    save_pipeline(out, *build_model(ShapesModelConfig(), seed=0))
    return out, "random ShapesModelConfig() weights (assets/shapes-base not found)"


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "shapes-base"))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "shapes", "grpo.yaml"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on a shared CPU)")
    ap.add_argument("--out", default=None, help="append the results table to this markdown file")
    args = ap.parse_args()

    from genrl.config import load_config
    from genrl.loop import Trainer

    tmp = tempfile.mkdtemp(prefix="genrl-bench-")
    model, model_desc = _model(args.model, tmp)
    cfg = load_config(args.config, [f"model.path={model}", f"run.dir={tmp}/run", "eval.every=0",
                                    "run.tensorboard=false", f"run.threads={args.threads}"])
    bs = cfg.train.batch_size
    cfg.sample.batch_size = bs
    tr = Trainer(cfg, progress=False)
    pol, algo = tr.policy, tr.algo
    idx, groups = tr.sampler.indices(0)
    prompts = [tr.train_prompts.prompts[i] for i in idx[:bs]]
    groups = groups[:bs]
    ctx = tr._ctx(0)

    # ---- rollout vs bare forwards ----
    from genrl.rollout import policy_sigmas

    cond = pol.encode(prompts)
    x = torch.randn(pol.noise_shape(bs, cfg.sample.resolution))
    sigmas = policy_sigmas(pol, cfg.sample.steps, cfg.sample.shift, cfg.sample.resolution)
    cfg_mult = 2 if cfg.sample.cfg_scale != 1.0 else 1

    def bare_rollout():
        with torch.no_grad():
            xx = torch.cat([x] * cfg_mult)
            c = {k: torch.cat([v] * cfg_mult) for k, v in cond.items()}
            for i in range(cfg.sample.steps):
                pol.velocity(xx, sigmas[i], c)

    batch_holder = {}

    def loop_rollout():
        pol.eval()
        batch_holder["b"] = algo.rollout(pol, prompts, groups, ctx)

    loop_rollout()  # warm-up (also fills the prompt cache as the loop does after the first step)
    bare_rollout()
    ra, rb = [], []
    for _ in range(args.repeats):
        ra.append(_timeit(loop_rollout))
        rb.append(_timeit(bare_rollout))
    batch = batch_holder["b"]
    t_reward = _timeit(lambda: tr.reward_fn(batch.images, batch.prompts, [tr.train_prompts.metadata[i]
                                                                          for i in idx[:bs]]))
    batch.rewards = torch.linspace(0, 1, bs)
    batch.advantages = torch.linspace(-1, 1, bs)
    chosen = torch.arange(bs)

    # ---- training step vs bare forward+backward ----
    from genrl.algorithms.grpo import trained_mask

    mask = trained_mask(batch.sde_mask, getattr(cfg.algorithm, "timestep_fraction", 0.99),
                        cfg.sample.sde_window_size > 0)
    steps = mask.any(0).nonzero().flatten().tolist()  # the steps any sample of the batch trains
    beta = getattr(cfg.algorithm, "beta", 0.0)
    lat = batch.latents
    state0 = {k: v.clone() for k, v in pol.trainable_state().items()}
    opt_state0 = tr.optimizer.state_dict()

    def bare_train():
        pol.train()
        c = {k: torch.cat([v] * cfg_mult) for k, v in batch.cond.items()}
        for j in steps:
            xx = torch.cat([lat[:, j]] * cfg_mult)
            if beta > 0:
                with torch.no_grad(), pol.disable_adapter():
                    pol.velocity(xx, sigmas[j], c)
            v = pol.velocity(xx, sigmas[j], c)
            (v.float().square().mean() / len(steps)).backward()
        for p in tr.params:
            p.grad = None

    def loop_train():
        tr.train_step(batch, chosen, 0)

    loop_train()
    bare_train()
    ta, tb = [], []
    for _ in range(args.repeats):
        ta.append(_timeit(loop_train))
        tb.append(_timeit(bare_train))
    with torch.no_grad():  # leave the weights as they were (not needed, but tidy)
        for n, p in pol.named_parameters():
            if n in state0:
                p.copy_(state0[n])
    tr.optimizer.load_state_dict(opt_state0)

    med = statistics.median
    r_roll, r_train = med(ra) / med(rb), med(ta) / med(tb)
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M')} - {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "",
        f"Model: {model_desc}; config {os.path.relpath(args.config, ROOT)} (batch {bs}, {cfg.sample.steps} steps, "
        f"{len(steps)} trained timesteps, CFG x{cfg_mult}, KL beta {beta}); median of {args.repeats}.",
        "",
        "| measurement | loop (s) | bare (s) | ratio | target |",
        "|---|---|---|---|---|",
        f"| rollout of one batch vs bare forward x steps | {med(ra):.4f} | {med(rb):.4f} | {r_roll:.3f} | <= 1.05 |",
        f"| training step (one micro-batch, 1 update) vs bare forward+backward | {med(ta):.4f} | {med(tb):.4f} | "
        f"{r_train:.3f} | <= 1.15 |",
        "",
        f"Reward (`{', '.join(cfg.rewards)}`) on the same batch: {t_reward:.4f} s (not part of either ratio).",
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
