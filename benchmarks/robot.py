"""Robot benchmark: held-out success rate against environment steps and wall-clock for pi_RL's Flow-Noise vs Flow-SDE
and PPO vs GRPO, on the built-in robot2d task and on metaworld push-v3, from the shipped BC checkpoints.

    python benchmarks/robot.py                                   # robot2d + push, 4 methods, 3 seeds (the issue's)
    python benchmarks/robot.py --tasks robot2d --seeds 0 --steps 40 --out benchmarks/robot_quick

Each run is `genrl train configs/robot/<task>_<method>.yaml run.seed=S train.steps=N eval.every=E` (a subprocess,
one torch thread); the curve is read back from its metrics.jsonl: eval/reward_mean (ODE success rate on the
held-out initial states) at each evaluation, with the environment steps consumed so far (sum over training steps of
episodes x mean episode length) and the run's wall-clock. Writes OUT.json (all curves), OUT.md (a table) and
OUT.png (success vs env steps and vs wall-clock); the runs (with their before/after GIFs in samples/) go to --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["flow_noise_ppo", "flow_sde_ppo", "flow_noise_grpo", "flow_sde_grpo"]
TASKS = {"robot2d": "robot2d", "push": "push"}


def curve(run_dir: str, episodes_per_step: int) -> list[dict]:
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    env_steps, out = 0.0, []
    for r in rows:
        if "train/reward_length" in r:
            env_steps += r["train/reward_length"] * episodes_per_step
        if "eval/reward_mean" in r:
            out.append({"step": r["step"], "env_steps": int(env_steps), "wall_s": round(r["wall_time"], 1),
                        "cpu_s": round(r["cpu_time"], 1) if "cpu_time" in r else None,
                        "success": r["eval/reward_mean"]})
    return out


def run_one(task: str, method: str, seed: int, steps: int, eval_every: int, out_dir: str, extra: list[str],
            resume: bool = False) -> dict:
    import yaml

    cfg_path = os.path.join(ROOT, "configs", "robot", f"{TASKS[task]}_{method}.yaml")
    run_dir = os.path.join(out_dir, f"{task}_{method}_s{seed}")
    if resume and os.path.isdir(os.path.join(run_dir, "checkpoints")):  # continue a shorter run (exact resume)
        cmd = [sys.executable, "-m", "genrl", "train", "--resume", run_dir, f"train.steps={steps}",
               f"eval.every={eval_every}", *extra, "--no-progress"]
    else:
        if os.path.isdir(run_dir):
            import shutil

            shutil.rmtree(run_dir)
        cmd = [sys.executable, "-m", "genrl", "train", cfg_path, f"run.dir={run_dir}", f"run.seed={seed}",
               f"train.steps={steps}", f"eval.every={eval_every}", "run.threads=1", *extra, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    with open(cfg_path) as f:
        s = yaml.safe_load(f)["sample"]
    pts = curve(run_dir, s["group_size"] * s["groups_per_step"])
    return {"task": task, "method": method, "seed": seed, "steps": steps, "wall_s": round(time.time() - t0, 1),
            "curve": pts}


def merged_results(sources: list[str], max_step: int | None = None) -> list[dict]:
    """Results from OUT.json files and run directories (TASK_METHOD_sSEED, read with curve()), cut at max_step."""
    import yaml

    out = []
    for src in sources:
        if os.path.isdir(src):
            task, rest = os.path.basename(src.rstrip("/")).split("_", 1)
            method, seed = rest.rsplit("_s", 1)
            with open(os.path.join(src, "config.yaml")) as f:
                s = yaml.safe_load(f)["sample"]
            pts = curve(src, s["group_size"] * s["groups_per_step"])
            out.append({"task": task, "method": method, "seed": int(seed), "steps": pts[-1]["step"], "curve": pts})
        else:
            with open(src) as f:
                out += json.load(f)["results"]
    for r in out:
        if max_step is not None:
            r["curve"] = [p for p in r["curve"] if p["step"] <= max_step]
    return out


def write_report(results: list[dict], out: str, command: str) -> None:
    import numpy as np

    with open(out + ".json", "w") as f:
        json.dump({"command": command, "results": results}, f, indent=1)
    lines = [f"Command: `{command}`", "",
             "| task | method | seeds | success at start | final success (mean ± std) | best | env steps | "
             "wall-clock (s) | CPU-minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in results):
        for method in METHODS:
            rs = [r for r in results if r["task"] == task and r["method"] == method]
            if not rs:
                continue
            start = np.mean([r["curve"][0]["success"] for r in rs])
            fin = [r["curve"][-1]["success"] for r in rs]
            best = np.mean([max(p["success"] for p in r["curve"]) for r in rs])
            cpus = [r["curve"][-1].get("cpu_s") for r in rs]
            cpu = f"{np.mean(cpus) / 60:.1f}" if None not in cpus else "n/a"
            lines.append(f"| {task} | {method} | {len(rs)} | {start:.3f} | {np.mean(fin):.3f} ± {np.std(fin):.3f} | "
                         f"{best:.3f} | {np.mean([r['curve'][-1]['env_steps'] for r in rs]):.0f} | "
                         f"{np.mean([r['curve'][-1]['wall_s'] for r in rs]):.0f} | {cpu} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tasks = list(dict.fromkeys(r["task"] for r in results))
        fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False)
        for i, task in enumerate(tasks):
            for j, key in enumerate(("env_steps", "wall_s")):
                ax = axes[i][j]
                for k, method in enumerate(METHODS):
                    for r in [r for r in results if r["task"] == task and r["method"] == method]:
                        ax.plot([p[key] for p in r["curve"]], [p["success"] for p in r["curve"]], color=f"C{k}",
                                alpha=0.8, label=method if r["seed"] == min(x["seed"] for x in results) else None)
                ax.set_xlabel("environment steps" if key == "env_steps" else "wall-clock (s)")
                ax.set_ylabel("held-out success")
                ax.set_title(task)
                ax.set_ylim(-0.02, 1.02)
                ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out + ".png", dpi=90)
    except ImportError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["robot2d", "push"], choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: robot2d 40, push 60)")
    p.add_argument("--eval-every", type=int, default=None, help="default: robot2d 5, push 10")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "robot"))
    p.add_argument("--runs", default=os.path.join(ROOT, "runs", "bench_robot"),
                   help="run directories (GIFs in samples/)")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides for every run")
    p.add_argument("--resume", action="store_true",
                   help="continue runs already in --runs to --steps (exact resume) instead of starting over")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON_OR_RUN_DIR",
                   help="write one report from earlier OUT.json files and/or run directories (runs done as separate "
                        "invocations, e.g. in parallel) instead of running anything")
    p.add_argument("--max-step", type=int, default=None, help="with --merge: cut every curve at this step")
    args = p.parse_args(argv)
    command = "python benchmarks/robot.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.merge:
        write_report(merged_results(args.merge, args.max_step), args.out, command)
        return 0
    results = []
    for task in args.tasks:
        steps = args.steps or {"robot2d": 40, "push": 60}[task]
        every = args.eval_every or {"robot2d": 5, "push": 10}[task]
        for method in args.methods:
            for seed in args.seeds:
                r = run_one(task, method, seed, steps, every, args.runs, args.set, args.resume)
                results.append(r)
                print(f"{task} {method} seed {seed}: " + " ".join(f"{p['success']:.2f}" for p in r["curve"]) +
                      f" ({r['wall_s']:.0f} s)", flush=True)
                write_report(results, args.out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
