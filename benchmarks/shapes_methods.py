"""Benchmark: Flow-GRPO vs DiffusionNFT vs AWM on the shapes world (one command).

Same base model, prompts (shapes:train for training), LoRA and evaluation (configs/shapes/{grpo,nft,awm}.yaml);
each method with its own recipe otherwise (Flow-GRPO needs 128 images per step and lr 5e-4, see its config). For
every (method, seed) the run trains until --minutes of TRAINING wall-clock (rollout + reward + update; evaluation
time excluded) or --max-steps, evaluating every --eval-every steps with the loop's own evaluator (EMA weights,
fixed noise, 20-step Euler ODE). The curve metric (--metric): the mean partial-credit shapes reward on the configs'
fixed subset of TRAINING prompts (eval.train_prompts; what the methods optimise; default) or the strict 0/1
accuracy on the held-out eval prompts.

    .venv/bin/python benchmarks/shapes_methods.py                       # the full protocol: 3 x 3 x 20 min
    .venv/bin/python benchmarks/shapes_methods.py --minutes 3 --seeds 0,1,2 --eval-every 5

Writes benchmarks/shapes_methods.md (tables), benchmarks/shapes_methods.png (accuracy vs wall-clock and vs images)
and benchmarks/shapes_methods.json (all curves); run directories (metrics.jsonl, sample grids) go under --runs-dir.
Targets (issue 6): NFT and AWM reach Flow-GRPO's final eval accuracy >= 5x sooner in wall-clock; the best method
reaches >= 0.9 strict eval accuracy within 60 CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from genrl.config import load_config  # noqa: E402
from genrl.loop import Trainer  # noqa: E402

METHODS = ("grpo", "nft", "awm")
LABELS = {"grpo": "Flow-GRPO", "nft": "DiffusionNFT", "awm": "AWM"}
METRICS = {"train_partial": ("eval/train/reward_mean", "partial-credit shapes reward on the fixed training prompts"),
           "strict": ("eval/shapes/strict", "strict (all-or-nothing) accuracy on the held-out eval prompts")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of grpo,nft,awm")
    p.add_argument("--seeds", default="0,1,2", help="comma list of run seeds")
    p.add_argument("--minutes", type=float, default=20.0, help="training wall-clock budget per run (eval excluded)")
    p.add_argument("--max-steps", type=int, default=100000, help="step cap per run")
    p.add_argument("--eval-every", type=int, default=5, help="evaluate every N steps (and at 0 and at the end)")
    p.add_argument("--eval-prompts", type=int, default=96, help="N prompts evenly spaced over shapes:eval")
    p.add_argument("--metric", choices=sorted(METRICS), default="train_partial", help="the curve metric")
    p.add_argument("--base", default=os.path.join(ROOT, "assets", "shapes-base"), help="base model directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy, shared CPU)")
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "bench-shapes-methods"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "shapes_methods"),
                   help="output prefix: writes PREFIX.md, PREFIX.png, PREFIX.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override applied to every method (e.g. sample.groups_per_step=4)")
    p.add_argument("--note", default="", help="free text added to the markdown summary")
    p.add_argument("--from-json", action="store_true",
                   help="do not train: rebuild PREFIX.md/.png from the runs already in PREFIX.json (e.g. after an "
                        "interrupted benchmark; only completed runs are in it)")
    p.add_argument("--merge", nargs="*", default=[], metavar="JSON",
                   help="with --from-json: add the runs of other PREFIX.json files (e.g. seeds run in parallel)")
    return p.parse_args(argv)


def _eval(tr: Trainer, train_s: float, images: int) -> dict:
    t = time.perf_counter()
    m = tr.evaluate(tr.step)
    row = {"step": tr.step, "train_s": train_s, "images": images, "eval_s": time.perf_counter() - t,
           **{name: m.get(key, float("nan")) for name, (key, _) in METRICS.items()}}
    tr.logger.log({**m, "wall_time": train_s, "samples_seen": images})
    return row


def run_one(method: str, seed: int, args) -> dict:
    """Train one (method, seed) under the time budget; returns its eval curve."""
    run_dir = os.path.join(args.runs_dir, f"{method}-s{seed}")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # this benchmark's own previous output
    overrides = [
        f"model.path={args.base}", f"run.dir={run_dir}", f"run.seed={seed}", "run.tensorboard=false",
        f"run.threads={args.threads}",
        f"train.steps={args.max_steps}", f"eval.every={args.eval_every}", f"eval.num_prompts={args.eval_prompts}",
        "checkpoint.every=0", *args.set,
    ]
    cfg = load_config(os.path.join(ROOT, "configs", "shapes", f"{method}.yaml"), overrides)
    tr = Trainer(cfg, progress=False)
    tr.t0 = time.time()
    per_step = cfg.sample.group_size * cfg.sample.groups_per_step
    budget = args.minutes * 60.0
    train_s, roll_s, images, curve = 0.0, 0.0, 0, []
    curve.append(_eval(tr, train_s, images))
    print(f"[{method} s{seed}] step 0 {args.metric} {curve[-1][args.metric]:.3f}", flush=True)
    # the step body of Trainer.run (rollout -> rewards -> advantages -> updates -> algorithm hook), timed
    while train_s < budget and tr.step < args.max_steps:
        step = tr.step
        t = time.perf_counter()
        batch, _ = tr.rollout_step(step)
        roll_s += time.perf_counter() - t
        chosen, info = tr.compute_advantages(batch, step)
        batch.advantages = info.pop("adv")
        metrics = tr.train_step(batch, chosen, step)
        tr.algo.after_step(tr.policy, tr._ctx(step, salt=999))
        dt = time.perf_counter() - t
        train_s += dt
        images += per_step
        tr.step = step + 1
        tr.logger.log({"step": tr.step, "wall_time": train_s, "samples_seen": images, **info, **metrics,
                       "time/step_s": dt})
        if tr.step % args.eval_every == 0:
            curve.append(_eval(tr, train_s, images))
            print(f"[{method} s{seed}] step {tr.step} train {train_s / 60:.1f} min {args.metric} "
                  f"{curve[-1][args.metric]:.3f} (train reward {info['train/reward_mean']:.3f})", flush=True)
    if curve[-1]["step"] != tr.step:
        curve.append(_eval(tr, train_s, images))
    tr.checkpoint()  # the final LoRA (EMA) for `genrl sample --lora` / `genrl rlg-sweep --lora RUN_DIR`
    tr.logger.close()
    return {"method": method, "seed": seed, "steps": tr.step, "train_s": train_s, "images": images,
            "step_s": train_s / max(tr.step, 1), "rollout_frac": roll_s / max(train_s, 1e-9), "curve": curve}


# ------------------------------------------------------------------------------------------------------------
def mean_curve(runs: list[dict], metric: str) -> dict:
    """Seed-mean curve of `metric` ("score") over the eval points all seeds reached (same steps for every seed)."""
    n = min(len(r["curve"]) for r in runs)
    pts = [[r["curve"][i] for r in runs] for i in range(n)]
    return {
        "step": [p[0]["step"] for p in pts],
        "train_s": [float(np.mean([q["train_s"] for q in p])) for p in pts],
        "images": [float(np.mean([q["images"] for q in p])) for p in pts],
        "score": [float(np.mean([q[metric] for q in p])) for p in pts],
        "score_min": [float(np.min([q[metric] for q in p])) for p in pts],
        "score_max": [float(np.max([q[metric] for q in p])) for p in pts],
    }


def first_reach(curve: dict, target: float, key: str) -> float | None:
    for v, x in zip(curve["score"], curve[key]):
        if v >= target - 1e-9:
            return x
    return None


def summarize(results: list[dict], args) -> dict:
    by = {m: [r for r in results if r["method"] == m] for m in dict.fromkeys(r["method"] for r in results)}
    other = next(k for k in METRICS if k != args.metric)
    curves = {m: mean_curve(rs, args.metric) for m, rs in by.items()}
    out = {"curves": curves, "rows": {}}
    grpo_final = curves["grpo"]["score"][-1] if "grpo" in curves else None
    t_grpo = first_reach(curves["grpo"], grpo_final, "train_s") if "grpo" in curves else None
    i_grpo = first_reach(curves["grpo"], grpo_final, "images") if "grpo" in curves else None
    for m, c in curves.items():
        rs = by[m]
        best = int(np.argmax(c["score"]))
        row = {
            "seeds": len(rs), "steps": float(np.mean([r["steps"] for r in rs])),
            "step_s": float(np.mean([r["step_s"] for r in rs])),
            "rollout_frac": float(np.mean([r.get("rollout_frac", float("nan")) for r in rs])),
            "start": c["score"][0], "final": c["score"][-1],
            "final_seeds": [r["curve"][-1][args.metric] for r in rs],
            "best": c["score"][best], "best_min": c["train_s"][best] / 60,
            "other_start": float(np.mean([r["curve"][0][other] for r in rs])),
            "other_final": float(np.mean([r["curve"][-1][other] for r in rs])),
            "reach_09_min": (lambda x: None if x is None else x / 60)(first_reach(c, 0.9, "train_s")),
        }
        if grpo_final is not None:
            t, i = first_reach(c, grpo_final, "train_s"), first_reach(c, grpo_final, "images")
            row["reach_grpo_min"] = None if t is None else t / 60
            row["reach_grpo_images"] = i
            row["speedup_wall"] = (t_grpo / t) if (t and t_grpo) else None
            row["speedup_images"] = (i_grpo / i) if (i and i_grpo) else None
        out["rows"][m] = row
    out["grpo_final"] = grpo_final
    return out


def _fmt(x, f="{:.2f}"):
    return "—" if x is None else f.format(x)


def write_markdown(summary: dict, results: list[dict], args, path: str, png: str) -> None:
    rows = summary["rows"]
    other = next(k for k in METRICS if k != args.metric)
    lines = [
        "# Flow-GRPO vs DiffusionNFT vs AWM on the shapes world",
        "",
        f"Command: `.venv/bin/python benchmarks/shapes_methods.py --minutes {args.minutes:g} --seeds {args.seeds} "
        f"--eval-every {args.eval_every} --eval-prompts {args.eval_prompts} --metric {args.metric}"
        + "".join(f" --set {s}" for s in args.set) + "`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs "
        f"(torch threads {args.threads}; shared with other work while measured), torch {torch.__version__}. "
        f"Base model: `{os.path.relpath(args.base, ROOT)}`. Budget per run: {args.minutes:g} min of training "
        f"wall-clock (rollout + reward + update; evaluation excluded). Metric: {METRICS[args.metric][1]} "
        "(EMA weights, fixed noise, 20-step Euler); seed mean (min-max over seeds in the plot). The other metric "
        f"({other}) is in the last column.",
        "",
        f"![{args.metric} vs wall-clock and images]({os.path.basename(png)})",
        "",
        "| method | seeds | steps | s/step (rollout+reward share) | @0 | final (mean) | "
        "final per seed | best (at min) | "
        f"reaches GRPO final at (min / images) | speed-up vs GRPO (wall / images) | reaches 0.9 at (min) | "
        f"{other} @0 -> final |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in rows.items():
        lines.append(
            f"| {LABELS.get(m, m)} | {r['seeds']} | {r['steps']:.0f} | {r['step_s']:.1f} ({r['rollout_frac']:.0%}) | "
            f"{r['start']:.3f} | "
            f"{r['final']:.3f} | {', '.join(f'{x:.3f}' for x in r['final_seeds'])} | "
            f"{r['best']:.3f} ({r['best_min']:.1f}) | "
            f"{_fmt(r.get('reach_grpo_min'))} / {_fmt(r.get('reach_grpo_images'), '{:.0f}')} | "
            f"{_fmt(r.get('speedup_wall'), '{:.1f}x')} / {_fmt(r.get('speedup_images'), '{:.1f}x')} | "
            f"{_fmt(r['reach_09_min'])} | {r['other_start']:.3f} -> {r['other_final']:.3f} |"
        )
    if summary.get("grpo_final") is not None:
        lines += ["", f"Flow-GRPO's final seed-mean {args.metric} (the target the others race to): "
                      f"{summary['grpo_final']:.3f}. 'Reaches' = first eval point whose seed-mean value is at least "
                      "that value; Flow-GRPO's own time is when its mean curve first reached its final value."]
    lines += ["", "## Seed-mean curves", ""]
    for m, c in summary["curves"].items():
        pts = ", ".join(f"{s}:{a:.3f}@{t / 60:.1f}m" for s, a, t in zip(c["step"], c["score"], c["train_s"]))
        lines.append(f"- {LABELS.get(m, m)} (step:{args.metric}@train-minutes): {pts}")
    if args.note:
        lines += ["", "## Notes", "", args.note]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(summary: dict, path: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m, c in summary["curves"].items():
        for ax, key, scale in ((axes[0], "train_s", 1 / 60), (axes[1], "images", 1.0)):
            x = np.array(c[key]) * scale
            ax.plot(x, c["score"], marker="o", ms=3, label=LABELS.get(m, m))
            ax.fill_between(x, c["score_min"], c["score_max"], alpha=0.2)
    for ax, xl in ((axes[0], "training wall-clock (min, eval excluded)"), (axes[1], "images generated")):
        ax.set_xlabel(xl)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1)
    if summary.get("grpo_final") is not None:
        for ax in axes:
            ax.axhline(summary["grpo_final"], color="gray", ls="--", lw=0.8)
    axes[0].legend()
    fig.suptitle("shapes world: Flow-GRPO vs DiffusionNFT vs AWM (seed mean, min-max band)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    if not args.from_json and not os.path.isfile(os.path.join(args.base, "model_index.json")):
        raise SystemExit(f"base model {args.base!r} not found; pretrain it with `genrl pretrain shapes` or pass --base")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    torch.set_num_threads(args.threads)
    results = []
    if args.from_json:
        with open(args.out + ".json") as f:
            saved = json.load(f)
        results = saved["results"]
        for k in ("minutes", "seeds", "eval_every", "eval_prompts", "base", "threads", "set"):
            setattr(args, k, saved["args"][k])
        for path in args.merge:
            with open(path) as f:
                results += json.load(f)["results"]
        args.seeds = ",".join(str(s) for s in sorted({r["seed"] for r in results}))
        seeds = []  # nothing to train
    # seed-major order: every method sees the same machine conditions as evenly as possible
    for seed in seeds:
        for m in methods:
            results.append(run_one(m, seed, args))
            with open(args.out + ".json", "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=1)
    summary = summarize(results, args)
    with open(args.out + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results, "summary": summary}, f, indent=1)
    plot(summary, args.out + ".png", args.metric)
    write_markdown(summary, results, args, args.out + ".md", args.out + ".png")
    print(open(args.out + ".md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
