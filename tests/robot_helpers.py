"""Shared helpers for the robot tests: a tiny random robot2d flow policy saved to disk and a tiny pi_rl config."""

from __future__ import annotations

import os

from genrl.config import load_config


def tiny_robot_policy(directory: str, seed: int = 0, **overrides) -> str:
    """A ~5k-parameter RobotFlowPolicy for robot2d (MLP 2 x 32, H = 4, chunk 2, K = 3) saved with save_pretrained."""
    if not os.path.isfile(os.path.join(directory, "model_index.json")):
        import torch

        from genrl.policies.robot import RobotFlowPolicy, RobotPolicyConfig

        torch.manual_seed(seed)
        cfg = dict(env="robot2d", obs_dim=6, action_dim=2, horizon=4, action_chunk=2, steps=3, hidden=32, layers=2,
                   time_dim=16, value_hidden=[32], noise_hidden=[16, 16])
        cfg.update(overrides)
        RobotFlowPolicy(RobotPolicyConfig(**cfg)).save_pretrained(directory)
    return directory


def tiny_robot_raw(model_path: str, run_dir: str, noise_method: str = "flow_sde", loss: str = "ppo",
                   **sections) -> dict:
    raw = {
        "model": {"path": model_path, "lora_rank": 0},
        "run": {"dir": run_dir, "seed": 3, "tensorboard": False, "threads": 1},
        "data": {"prompts": "episodes:64"},
        "sample": {"group_size": 4, "groups_per_step": 2, "batch_size": 8},
        "advantage": {"filter_zero_std": False, "global_std": False},  # a random policy rarely succeeds
        "train": {"steps": 2, "batch_size": 4, "lr": 1e-3, "inner_epochs": 2, "updates_per_step": 2},
        "algorithm": {"name": "pi_rl", "noise_method": noise_method, "loss": loss, "env": "robot2d",
                      "env_options": {"max_steps": 12}, "entropy_coef": 0.005 if noise_method == "flow_noise" else 0},
        "rewards": {"episode_success": 1.0},
        "ema": {"enabled": False},
        "eval": {"every": 2, "prompts": "episodes:eval:4", "num_prompts": 4, "batch_size": 4, "use_ema": False,
                 "grid_images": 2},
        "checkpoint": {"every": 1},
    }
    for k, v in sections.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return raw


def tiny_robot_config(model_path: str, run_dir: str, noise_method: str = "flow_sde", loss: str = "ppo", **sections):
    return load_config(raw=tiny_robot_raw(model_path, run_dir, noise_method, loss, **sections))
