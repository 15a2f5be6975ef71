"""A `genrl train` process for the step-time benchmarks (compile_bench, env_switch_bench): the command with evaluations
and checkpoints off, and the per-step medians read back from the run's metrics.jsonl."""

from __future__ import annotations

import json
import os
import statistics
import sys


def train_command(config: str, steps: int, threads: int, run_dir: str, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "genrl", "train", config, f"train.steps={steps}", "eval.every=0",
            "checkpoint.every=0", "run.tensorboard=false", f"run.threads={threads}", f"run.dir={run_dir}",
            *overrides]


def step_summary(run_dir: str) -> dict:
    """First step's time, medians of the later steps (whole step, rollout, update), and every step's reward."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rest = rows[1:]
    return {
        "first": rows[0]["time/step_s"],
        "step": statistics.median(r["time/step_s"] for r in rest),
        "rollout": statistics.median(r["time/rollout_s"] for r in rest),
        "update": statistics.median(r["time/train_s"] for r in rest),
        "rewards": [r["train/reward_mean"] for r in rows],
    }
