"""What `run.compile: true` costs and saves on a training config (CPU).

    .venv/bin/python benchmarks/compile_bench.py [--config configs/shapes/demo.yaml] [--steps 12] [--out F.md]

Runs the same `genrl train` three times, one process each, evaluations off: eager, compiled with an empty inductor
cache (what a first run pays), and compiled again on that cache (a rerun on the same machine). Reported per run:
the first step (where compilation happens), the median of the remaining steps (rollout and update apart), and
the whole process's wall time. From these: the steady-state speed-up and the number of steps after which the
cold compiled run has caught up with the eager one. The rewards of the compiled and eager runs are printed side
by side: they agree closely but not bit for bit (compiled kernels round differently).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time

from markdown_out import publish
from train_runs import step_summary, train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(config: str, steps: int, compile_: bool, run_dir: str, cache: str, threads: int,
         overrides: list[str]) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    cmd = train_command(config, steps, threads, run_dir, [f"run.compile={str(compile_).lower()}", *overrides])
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    res = step_summary(run_dir)
    return {**res, "wall": wall, "rewards": [round(r, 4) for r in res["rewards"]]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "shapes", "demo.yaml"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append the results table to this markdown file")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="genrl-compile-")
    cache = os.path.join(tmp, "inductor")
    plan = (("eager", False, "eager"), ("compiled, cold cache", True, "cold"), ("compiled, warm cache", True, "warm"))
    runs = {name: _run(args.config, args.steps, compiled, os.path.join(tmp, sub), cache, args.threads, args.overrides)
            for name, compiled, sub in plan}  # in this order: the warm run reuses the cold run's cache
    eager = runs["eager"]
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M')} - {platform.machine()}, {os.cpu_count()} cores, {args.threads} "
        f"thread(s), config {os.path.relpath(args.config, ROOT)}, {args.steps} steps, evaluations off",
        "",
        "| run | process wall (s) | first step (s) | later steps, median (s) | rollout | update | speed-up | "
        "break-even (steps) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        gain = eager["step"] - r["step"]
        extra = (r["wall"] - r["step"] * (args.steps - 1)) - (eager["wall"] - eager["step"] * (args.steps - 1))
        even = "-" if name == "eager" else (f"{extra / gain:.0f}" if gain > 0 else "never")
        lines.append(f"| {name} | {r['wall']:.1f} | {r['first']:.2f} | {r['step']:.3f} | {r['rollout']:.3f} | "
                     f"{r['update']:.3f} | {eager['step'] / r['step']:.2f}x | {even} |")
    lines += ["", "Step rewards (train/reward_mean), eager vs compiled (cold):", "",
              f"- eager:    {eager['rewards']}", f"- compiled: {runs['compiled, cold cache']['rewards']}", ""]
    text = "\n".join(lines)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
