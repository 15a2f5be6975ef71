"""Benchmark: samplers.sample (Euler) vs the diffusers FlowMatchEulerDiscreteScheduler step loop, and the
overhead of samplers.sample over bare model forwards (time convention: t = sigma, SD3 timestep = 1000 sigma).

Same random SD3Transformer2DModel (sized so one forward takes a few ms on CPU) and the same noise for all three:
  diffusers  scheduler.set_timesteps(N); for t: v = model(x, t); x = scheduler.step(v, t, x).prev_sample
  samplers   samplers.sample(lambda x, s: model(x, 1000 s), noise, samplers.flow_sigmas(N, 3.0))
  bare       N model forwards on the same inputs (no sampler at all): the lower bound
Runs are interleaved (rotating order) and repeated; medians are reported. Targets: samplers / diffusers <= 1.0,
samplers / bare - 1 <= 5 %.

    .venv/bin/python benchmarks/samplers_bench.py [--steps 28 --repeats 15 --markdown benchmarks/samplers.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import samplers  # noqa: E402


def build(width: int, layers: int, size: int):
    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=size, patch_size=2, in_channels=16, num_layers=layers, attention_head_dim=32,
        num_attention_heads=width // 32, joint_attention_dim=64, caption_projection_dim=width,
        pooled_projection_dim=64, out_channels=16, pos_embed_max_size=size,
    ).eval()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 16, size, size, generator=g)
    enc, pooled = torch.randn(1, 16, 64, generator=g), torch.randn(1, 64, generator=g)

    def forward(x, timestep):
        return model(hidden_states=x, timestep=timestep.expand(x.shape[0]), encoder_hidden_states=enc,
                     pooled_projections=pooled, return_dict=False)[0]

    return forward, noise


def run_diffusers(forward, noise, steps):
    sch = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sch.set_timesteps(steps)
    x = noise
    for t in sch.timesteps:
        x = sch.step(forward(x, t), t, x, return_dict=False)[0]
    return x


def run_samplers(forward, noise, steps):
    return samplers.sample(lambda x, s: forward(x, s * 1000), noise, samplers.flow_sigmas(steps, shift=3.0)).samples


def run_bare(forward, noise, timesteps):
    for t in timesteps:
        forward(noise, t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--width", type=int, default=128, help="transformer hidden size (multiple of 32)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--size", type=int, default=32, help="latent height = width")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is stable on a shared CPU)")
    ap.add_argument("--markdown", default=None, help="also write the results table to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    forward, noise = build(args.width, args.layers, args.size)
    timesteps = samplers.flow_sigmas(args.steps, 3.0)[:-1] * 1000
    times = {"diffusers": [], "samplers": [], "bare": []}
    fns = {
        "diffusers": lambda: run_diffusers(forward, noise, args.steps),
        "samplers": lambda: run_samplers(forward, noise, args.steps),
        "bare": lambda: run_bare(forward, noise, timesteps),
    }
    with torch.inference_mode():
        ref, ours = fns["diffusers"](), fns["samplers"]()  # warm-up + equality
        max_diff = (ref - ours).abs().max().item()
        names = list(fns)
        for r in range(args.repeats):
            for name in names[r % 3:] + names[: r % 3]:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)

        # the samplers' own cost, free of model-time noise: a velocity that costs nothing (precomputed tensor)
        v0 = torch.randn_like(noise)
        free = {"diffusers": [], "samplers": []}
        for _ in range(200):
            for name, fn in (("diffusers", run_diffusers), ("samplers", run_samplers)):
                t0 = time.perf_counter()
                fn(lambda x, t: v0, noise, args.steps)
                free[name].append(time.perf_counter() - t0)
        fwd = []
        for _ in range(20):
            t0 = time.perf_counter()
            forward(noise, timesteps[0])
            fwd.append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    free_med = {k: statistics.median(v) for k, v in free.items()}
    fwd_min = min(fwd)
    best = {k: min(v) for k, v in times.items()}
    paired_vs_diffusers = statistics.median(s / d for s, d in zip(times["samplers"], times["diffusers"]))
    paired_vs_bare = statistics.median(s / b for s, b in zip(times["samplers"], times["bare"]))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = [
        f"machine: {machine}; torch threads {torch.get_num_threads()}",
        f"model: SD3Transformer2DModel width {args.width}, {args.layers} layers, latent 16x{args.size}x{args.size}; "
        f"{args.steps} Euler steps; {args.repeats} interleaved repeats; one forward: min {fwd_min * 1e3:.1f} ms, "
        f"median {statistics.median(fwd) * 1e3:.1f} ms",
        f"max |samplers - diffusers| = {max_diff:.3g} (equal: {max_diff <= 1e-5})",
        "",
        "| run | median wall time (s) | min wall time (s) |",
        "|---|---|---|",
        *(f"| {k} | {med[k]:.4f} | {best[k]:.4f} |" for k in med),
        "",
        f"samplers / diffusers: {med['samplers'] / med['diffusers']:.3f} (ratio of medians), "
        f"{paired_vs_diffusers:.3f} (median of paired ratios), {best['samplers'] / best['diffusers']:.3f} (ratio of "
        "minima); target <= 1.0",
        f"samplers overhead over bare forwards: {100 * (med['samplers'] / med['bare'] - 1):+.2f} % (ratio of "
        f"medians), {100 * (paired_vs_bare - 1):+.2f} % (median of paired ratios), "
        f"{100 * (best['samplers'] / best['bare'] - 1):+.2f} % (ratio of minima); target <= 5 %",
        "",
        f"sampler cost alone (velocity_fn returns a precomputed tensor; {args.steps} steps, median of 200): "
        f"samplers {free_med['samplers'] * 1e3:.3f} ms, diffusers scheduler loop {free_med['diffusers'] * 1e3:.3f} ms "
        f"(ratio {free_med['samplers'] / free_med['diffusers']:.2f}); relative to {args.steps} forwards at the minimum "
        f"forward time: samplers {100 * free_med['samplers'] / (args.steps * fwd_min):.3f} %, "
        f"diffusers {100 * free_med['diffusers'] / (args.steps * fwd_min):.3f} %",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# samplers benchmark\n\nProduced by `.venv/bin/python benchmarks/samplers_bench.py "
                    f"--steps {args.steps} --repeats {args.repeats} --threads {args.threads} "
                    f"--markdown {args.markdown}`.\n\n```\n")
            f.write("\n".join(lines[:3]) + "\n```\n\n" + "\n".join(lines[4:]) + "\n")
            f.write(f"\nLoad average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs "
                    "shared the CPU). Whole-run ratios then carry several % of scheduling noise in either direction; "
                    "the sampler-cost line isolates what the sampler itself adds per run, which is the quantity the "
                    "targets are about.\n")
    return 0 if max_diff <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
