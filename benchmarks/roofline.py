"""Roofline of the CPU demo: model FLOPs of one rollout and one update against this machine's matmul peak.

    .venv/bin/python benchmarks/roofline.py [--config configs/shapes/awm.yaml] [--threads 1,2] [--busy N] \
        [--set key=value ...] [--out benchmarks/roofline.md]

For each thread count, in one process:
1. peak: the best of `--repeats` large fp32 `torch.mm` (1024^3, 2048^3) -> FLOP/s (2 n^3 per product);
2. one demo step of the loop (`Trainer.rollout_step`, advantages, `Trainer.train_step`), FLOPs counted by
   torch.utils.flop_counter.FlopCounterMode on the same step (matmuls, convolutions and attention, forward and
   backward: the ops that carry the model's arithmetic), times as the median of `--repeats` steps;
3. achieved FLOP/s = FLOPs / time, and achieved / peak;
4. where the time goes: torch.profiler over one step, self CPU time grouped into attention, matmul, layer norm,
   element-wise / other ops, and the reward (Python, outside torch).
Numbers are ratios and fractions from one run; the absolute seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from markdown_out import publish  # noqa: E402

GROUPS = {  # profiler op name (substring) -> group
    "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention", "bmm", "baddbmm", "softmax"),
    "matmul": ("addmm", "aten::mm", "aten::matmul", "aten::linear", "conv"),
    "layer norm": ("layer_norm", "native_layer_norm", "rms_norm"),
}


def mm_peak(repeats: int) -> float:
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def _group(name: str) -> str:
    for g, keys in GROUPS.items():
        if any(k in name for k in keys):
            return g
    return "element-wise / other"


class Step:
    """One demo step split as the loop runs it: rollout (+reward), advantages, update."""

    def __init__(self, tr):
        self.tr, self.k = tr, 0

    def rollout(self):
        self.batch, _ = self.tr.rollout_step(self.k)
        chosen, info = self.tr.compute_advantages(self.batch, self.k)
        self.batch.advantages = info.pop("adv")
        self.tr.algo.prepare_update(self.batch, self.tr._gather)  # noqa: SLF001
        self.chosen = chosen

    def update(self):
        self.tr.train_step(self.batch, self.chosen, self.k)
        self.k += 1


def measure(config: str, threads: int, repeats: int, overrides: list[str]) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from genrl.config import load_config
    from genrl.loop import Trainer

    torch.set_num_threads(threads)
    tmp = tempfile.mkdtemp(prefix="genrl-roofline-")
    cfg = load_config(config, [f"run.dir={tmp}/run", "eval.every=0", "run.tensorboard=false",
                               f"run.threads={threads}", *overrides])
    tr = Trainer(cfg, progress=False)
    st = Step(tr)
    peak = mm_peak(repeats)
    st.rollout()
    st.update()  # warm-up
    with FlopCounterMode(display=False) as fc:
        st.rollout()
    f_roll = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        st.update()
    f_upd = fc.get_total_flops()
    t_roll, t_upd = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        st.rollout()
        t_roll.append(time.perf_counter() - t)
        t = time.perf_counter()
        st.update()
        t_upd.append(time.perf_counter() - t)
    # the reward of one step on real rollout outputs: record what the loop's rollout hands its scorer (the loop
    # frees the outputs once scored) during one untimed rollout, then time the reward on exactly those inputs
    scored, score = [], tr._score  # noqa: SLF001
    tr._score = lambda *args: scored.append(args) or score(*args)  # noqa: SLF001
    st.rollout()
    del tr._score  # back to Trainer._score
    t_reward = []
    for _ in range(repeats):
        t = time.perf_counter()
        for args in scored:
            tr.reward_fn(*args)
        t_reward.append(time.perf_counter() - t)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        st.rollout()
        st.update()
    groups: dict[str, float] = {}
    for ev in prof.key_averages():
        g = _group(ev.key)
        groups[g] = groups.get(g, 0.0) + ev.self_cpu_time_total / 1e6
    torch_total = sum(groups.values())
    med = statistics.median
    return {"threads": threads, "peak": peak, "flops_rollout": f_roll, "flops_update": f_upd,
            "t_rollout": med(t_roll), "t_update": med(t_upd), "t_reward": med(t_reward),
            "groups": groups, "torch_total": torch_total,
            "images": cfg.sample.group_size * cfg.sample.groups_per_step}


def report(results: list[dict], config: str, busy: int = 0) -> str:
    load = f"{busy} competing CPU-bound process(es)" if busy else "idle machine"
    lines = [f"### {time.strftime('%Y-%m-%d %H:%M')} - {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, {load}, torch {torch.__version__}, config {os.path.relpath(config, ROOT)}", "",
             "| threads | mm peak (GFLOP/s) | phase | GFLOP | time (s) | achieved (GFLOP/s) | achieved / peak |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for ph in ("rollout", "update"):
            f, t = r[f"flops_{ph}"], r[f"t_{ph}"]
            lines.append(f"| {r['threads']} | {r['peak'] / 1e9:.1f} | {ph} ({r['images']} images) | {f / 1e9:.1f} | "
                         f"{t:.2f} | {f / t / 1e9:.1f} | {f / t / r['peak']:.2f} |")
    lines += ["", "Self CPU time of one step (rollout + update) by op group (torch.profiler), and the reward of one "
              "step's rollout outputs (timed on its own; it is part of the rollout time above):", "",
              "| threads | " + " | ".join(list(GROUPS) + ["element-wise / other"]) + " | reward (s) |",
              "|---|" + "---|" * (len(GROUPS) + 2)]
    for r in results:
        tot = r["torch_total"]
        cells = [f"{r['groups'].get(g, 0.0) / tot:.0%}" for g in list(GROUPS) + ["element-wise / other"]]
        lines.append(f"| {r['threads']} | " + " | ".join(cells) + f" | {r['t_reward']:.2f} |")
    if len(results) > 1:
        a, b = results[0], results[-1]
        lines += ["", f"Step time with {a['threads']} thread(s) / with {b['threads']}: "
                  f"{(a['t_rollout'] + a['t_update']) / (b['t_rollout'] + b['t_update']):.2f} (above 1: more threads "
                  f"are faster); mm peak ratio {b['peak'] / a['peak']:.2f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "shapes", "awm.yaml"))
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--busy", type=int, default=0, help="run N CPU-bound competing processes (a busy machine)")
    ap.add_argument("--out", default=None, help="append the tables to this markdown file")
    a = ap.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    try:
        results = [measure(a.config, int(t), a.repeats, a.set) for t in a.threads.split(",")]
    finally:
        for h in hogs:
            h.kill()
    text = report(results, a.config, a.busy)
    publish(text, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
