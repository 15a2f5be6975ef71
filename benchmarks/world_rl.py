"""Shared runner of the embedded-world RL benchmarks (benchmarks/video.py, benchmarks/shapes3d.py): held-out partial
and strict credit against CPU time, one `genrl train` subprocess per (config, seed).

Each run is `genrl train configs/<dir>/<config>.yaml run.seed=S train.cpu_minutes=C eval.every=E run.threads=1` (one
torch thread; the budget is the run's own CPU time, evaluations included). The curve is read back from metrics.jsonl:
eval/<reward>/partial and eval/<reward>/strict (the world's reward on its held-out prompts, ODE, EMA weights) at each
evaluation, with the run's CPU time. Writes OUT.json (all curves), OUT.md (a table) and OUT.png (partial and strict
against CPU-minutes); the runs (with their sample grids in samples/) go to --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def curve(run_dir: str, reward: str) -> list[dict]:
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [{"step": r["step"], "cpu_min": round(r["cpu_time"] / 60, 2), "wall_min": round(r["wall_time"] / 60, 2),
             "partial": r.get(f"eval/{reward}/partial", r["eval/reward_mean"]),
             "strict": r.get(f"eval/{reward}/strict"), "grid": r.get("eval/grid")}
            for r in rows if "eval/reward_mean" in r]


def run_one(config_dir: str, reward: str, method: str, seed: int, cpu_minutes: float, eval_every: int, runs: str,
            extra: list[str]) -> dict:
    run_dir = os.path.join(runs, f"{method}_s{seed}")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "genrl", "train", os.path.join(ROOT, "configs", config_dir, f"{method}.yaml"),
           f"run.dir={run_dir}", f"run.seed={seed}", "train.steps=100000", f"train.cpu_minutes={cpu_minutes}",
           f"eval.every={eval_every}", "checkpoint.every=0", "run.threads=1", *extra, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return {"method": method, "seed": seed, "run_dir": os.path.relpath(run_dir, ROOT),
            "wall_s": round(time.time() - t0, 1), "curve": curve(run_dir, reward)}


def write_report(results: list[dict], methods: list[str], out: str, command: str) -> None:
    import numpy as np

    with open(out + ".json", "w") as f:
        json.dump({"command": command, "results": results}, f, indent=1)
    lines = [f"Command: `{command}`", "",
             "| method | seeds | partial at start | final partial (mean ± std) | gain | best partial | strict start -> "
             "final (mean ± std) | strict gain | steps | CPU-minutes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        rs = [r for r in results if r["method"] == method]
        if not rs:
            continue
        start = np.mean([r["curve"][0]["partial"] for r in rs])
        fin = [r["curve"][-1]["partial"] for r in rs]
        best = np.mean([max(p["partial"] for p in r["curve"]) for r in rs])
        s0 = np.mean([r["curve"][0]["strict"] for r in rs])
        s1 = [r["curve"][-1]["strict"] for r in rs]
        lines.append(f"| {method} | {len(rs)} | {start:.3f} | {np.mean(fin):.3f} ± {np.std(fin):.3f} | "
                     f"{np.mean(fin) - start:+.3f} | {best:.3f} | {s0:.3f} -> {np.mean(s1):.3f} ± {np.std(s1):.3f} | "
                     f"{np.mean(s1) - s0:+.3f} | {np.mean([r['curve'][-1]['step'] for r in rs]):.0f} | "
                     f"{np.mean([r['curve'][-1]['cpu_min'] for r in rs]):.1f} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for j, key in enumerate(("partial", "strict")):
        for k, method in enumerate(methods):
            for r in [r for r in results if r["method"] == method]:
                axes[j].plot([p["cpu_min"] for p in r["curve"]], [p[key] for p in r["curve"]], color=f"C{k}",
                             marker="o", ms=3, label=method if r["seed"] == min(x["seed"] for x in results) else None)
        axes[j].set_xlabel("CPU-minutes (1 thread, evaluations included)")
        axes[j].set_ylabel(f"held-out {key}")
        axes[j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=90)


def main(script: str, doc: str, config_dir: str, reward: str, methods: list[str], default_out: str,
         default_runs: str, default_eval_every: int, argv=None) -> int:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=methods, choices=methods)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--cpu-minutes", type=float, default=30.0, help="CPU budget per run")
    p.add_argument("--eval-every", type=int, default=default_eval_every)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", default_out))
    p.add_argument("--runs", default=os.path.join(ROOT, "runs", default_runs), help="run directories (sample grids)")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides for every run")
    p.add_argument("--merge", nargs="+", metavar="OUT_JSON", help="write one report from earlier OUT.json files "
                   "(runs done as separate invocations, e.g. in parallel) instead of running anything")
    args = p.parse_args(argv)
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.merge:
        results = [r for path in args.merge for r in json.load(open(path))["results"]]
        write_report(results, methods, args.out, command)
        return 0
    results = []
    for method in args.methods:
        for seed in args.seeds:
            r = run_one(config_dir, reward, method, seed, args.cpu_minutes, args.eval_every, args.runs, args.set)
            results.append(r)
            print(f"{method} seed {seed}: " + " ".join(f"{q['partial']:.3f}/{q['strict']:.3f}" for q in r["curve"]),
                  flush=True)
            write_report(results, methods, args.out, command)
    return 0
