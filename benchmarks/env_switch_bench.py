"""What one of genrl's exact CPU speed settings saves on a training config, and that it changes nothing computed.

    .venv/bin/python benchmarks/env_switch_bench.py --switch malloc|inference_mode [--config configs/shapes/demo.yaml]
        [--steps 10] [--rounds 3] [--threads 2] [--out benchmarks/malloc.md]

The switches, each an environment variable genrl reads (0: off):
    malloc          GENRL_MALLOC_TUNING: genrl.malloc's glibc settings (off: glibc's defaults)
    inference_mode  GENRL_INFERENCE_MODE: torch.inference_mode for no-grad forwards (off: torch.no_grad)

Runs the same `genrl train` (evaluations and checkpoints off) in fresh processes, alternating the two arms for
--rounds rounds (the order within a round alternating), so that a drift of the machine's speed hits both arms
alike. Reported per arm: the median over rounds of each run's median step time (steps after the first), rollout
and update apart, the process's minor page faults and peak RSS (getrusage of the child), and whether every step
reward is bit-identical between the arms.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time

from markdown_out import publish
from train_runs import step_summary, train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SWITCHES = {  # name: (environment variable, arm off, arm on)
    "malloc": ("GENRL_MALLOC_TUNING", "glibc defaults", "genrl.malloc"),
    "inference_mode": ("GENRL_INFERENCE_MODE", "torch.no_grad", "torch.inference_mode"),
}


def _run(config: str, steps: int, env_var: str, on: bool, run_dir: str, threads: int, overrides: list[str]) -> dict:
    env = dict(os.environ, **{env_var: "1" if on else "0"})
    cmd = train_command(config, steps, threads, run_dir, overrides)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return {**step_summary(run_dir), "minflt": usage.ru_minflt, "maxrss_mib": usage.ru_maxrss / 1024}  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switch", choices=sorted(SWITCHES), required=True)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "shapes", "demo.yaml"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append the results table to this markdown file")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()

    env_var, off, on = SWITCHES[args.switch]
    tmp = tempfile.mkdtemp(prefix=f"genrl-{args.switch}-")
    runs: dict[str, list[dict]] = {off: [], on: []}
    for k in range(args.rounds):
        arms = ((off, False), (on, True))
        for name, state in arms if k % 2 == 0 else arms[::-1]:  # ABBA: the order within a round alternates
            runs[name].append(_run(args.config, args.steps, env_var, state, os.path.join(tmp, f"{int(state)}-{k}"),
                                   args.threads, args.overrides))
    identical = all(r["rewards"] == runs[off][0]["rewards"] for rs in runs.values() for r in rs)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    base = med(off, "step")
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M')} - {platform.machine()}, {os.cpu_count()} cores, {args.threads} "
        f"thread(s), config {os.path.relpath(args.config, ROOT)}, {args.steps} steps x {args.rounds} rounds "
        f"(arms alternated), evaluations off, switch {env_var}",
        "",
        "| arm | step, median (s) | rollout | update | speed-up | minor faults per run | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in runs:
        lines.append(f"| {name} | {med(name, 'step'):.3f} | {med(name, 'rollout'):.3f} | {med(name, 'update'):.3f} | "
                     f"{base / med(name, 'step'):.2f}x | {med(name, 'minflt'):,.0f} | {med(name, 'maxrss_mib'):.0f} |")
    per_round = [f"{d['step'] / t['step']:.2f}x" for d, t in zip(runs[off], runs[on])]
    lines += ["", f"Speed-up per round: {', '.join(per_round)}. Step rewards bit-identical across all runs: "
              f"{'yes' if identical else 'NO'}.", ""]
    publish("\n".join(lines), args.out)
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
