"""Held-out sudoku solve rate against training CPU time: BGPO (n_t 16 and 4) and diffu-GRPO, same base model.

Every (method, seed) runs the loop's step body (rollout -> reward -> advantages -> updates) from the shipped
configs (configs/dllm/{bgpo,diffu_grpo}_sudoku.yaml) until `minutes` of TRAINING CPU time of this process
(time.process_time with 1 torch thread: robust to other jobs sharing the CPU; evaluation excluded), evaluating
all 192 held-out puzzles (greedy decoding) with the loop's evaluator every `eval_every` steps, and 192 fixed
training puzzles beside them (`eval.train_prompts`: does RL improve the puzzles it trains on, and how much of
that carries over to the held-out grids?). The final LoRA is saved as the run's last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = {
    "bgpo_nt16": ("bgpo_sudoku.yaml", ["algorithm.mc_samples=16"]),
    "bgpo_nt4": ("bgpo_sudoku.yaml", ["algorithm.mc_samples=4"]),
    "diffu_grpo": ("diffu_grpo_sudoku.yaml", []),
    # diffu-GRPO with BGPO's shipped deviation (positive advantages only): is BGPO's edge the method or the weights?
    "diffu_grpo_pos": ("diffu_grpo_sudoku.yaml", ["advantage.negative_weight=0"]),
    # BGPO with the advantages as published (negatives included)
    "bgpo_nt4_all": ("bgpo_sudoku.yaml", ["algorithm.mc_samples=4", "advantage.negative_weight=1"]),
}


def _eval(tr, cpu_s: float, wall_s: float) -> dict:
    m = tr.evaluate(tr.step)
    row = {"step": tr.step, "cpu_min": cpu_s / 60, "wall_min": wall_s / 60,
           "solved": m.get("eval/sudoku/solved", float("nan")), "cells": m.get("eval/sudoku", float("nan")),
           "train_solved": m.get("eval/train/sudoku/solved", float("nan"))}
    tr.logger.log({**m, "wall_time": cpu_s})
    return row


def run_one(method: str, seed: int, minutes: float, eval_every: int, runs_dir: str, model: str,
            extra: list[str] | None = None, max_wall_minutes: float = float("inf")) -> dict:
    from genrl.config import load_config
    from genrl.loop import Trainer

    cfg_file, overrides = METHODS[method]
    run_dir = os.path.join(runs_dir, f"{method}-s{seed}")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # this benchmark's own previous output
    cfg = load_config(os.path.join(ROOT, "configs", "dllm", cfg_file),
                      [*overrides, f"model.path={model}", f"run.dir={run_dir}", f"run.seed={seed}",
                       "train.steps=100000", "checkpoint.every=0", "run.threads=1", "eval.train_prompts=192",
                       *(extra or [])])
    tr = Trainer(cfg, progress=False)
    tr.t0 = time.time()
    cpu_s = wall_s = 0.0
    curve = [_eval(tr, cpu_s, wall_s)]
    print(f"[{method} s{seed}] step 0 solved {curve[-1]['solved']:.3f}", flush=True)
    w0 = time.perf_counter()
    while cpu_s < minutes * 60 and time.perf_counter() - w0 < max_wall_minutes * 60:
        step = tr.step
        c, w = time.process_time(), time.perf_counter()
        batch, _, rounds = tr.dynamic_rollout(step)  # one round unless advantage.dynamic_sampling
        chosen, info = tr.compute_advantages(batch, step)
        batch.advantages = info.pop("adv")
        metrics = tr.train_step(batch, chosen, step)
        tr.algo.after_step(tr.policy, tr._ctx(step, salt=999))
        cpu_s += time.process_time() - c
        wall_s += time.perf_counter() - w
        tr.step = step + 1
        tr.logger.log({"step": tr.step, "wall_time": cpu_s, "train/rollout_rounds": rounds, **info, **metrics})
        if tr.step % eval_every == 0:
            curve.append(_eval(tr, cpu_s, wall_s))
            print(f"[{method} s{seed}] step {tr.step} cpu {cpu_s / 60:.1f} min solved {curve[-1]['solved']:.3f} "
                  f"(train reward {info['train/reward_mean']:.3f})", flush=True)
    if curve[-1]["step"] != tr.step:
        curve.append(_eval(tr, cpu_s, wall_s))
    tr.checkpoint()  # the final LoRA: `genrl eval --adapter RUN/checkpoints/step_N/lora` scores it again
    tr.logger.close()
    return {"method": method, "seed": seed, "steps": tr.step, "cpu_min": cpu_s / 60, "wall_min": wall_s / 60,
            "budget_cpu_min": minutes, "stopped_by": "cpu budget" if cpu_s >= minutes * 60 else "wall cap",
            "curve": curve}


if __name__ == "__main__":  # one (method, seed) run -> JSON on stdout (run.py --parallel starts these)
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("seed", type=int)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--max-wall-minutes", type=float, default=float("inf"))
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", nargs="*", default=[])
    a = ap.parse_args()
    sys.stdout.flush()
    res = run_one(a.method, a.seed, a.minutes, a.eval_every, a.runs_dir, a.model, a.set, a.max_wall_minutes)
    print("RESULT " + json.dumps(res), flush=True)
