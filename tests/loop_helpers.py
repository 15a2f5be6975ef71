"""Shared helpers for the loop / Flow-GRPO tests: a tiny random shapes pipeline and a tiny run config."""

from __future__ import annotations

import os

from genrl.config import load_config


def tiny_shapes_model(directory: str) -> str:
    """A ~20k-parameter ShapesPipeline (16 px, 1 layer) saved with save_pretrained; returns its path."""
    if not os.path.isfile(os.path.join(directory, "model_index.json")):
        from genrl.shapes.model import ShapesModelConfig, build_model, save_pipeline

        cfg = ShapesModelConfig(resolution=16, patch_size=4, num_layers=1, num_attention_heads=2,
                                attention_head_dim=8, text_hidden=16, text_layers=1, text_heads=2)
        save_pipeline(directory, *build_model(cfg, seed=0))
    return directory


def tiny_raw(model: str, run_dir: str, **sections) -> dict:
    raw = {
        "model": {"path": model, "lora_rank": 4},
        "run": {"dir": run_dir, "seed": 0, "tensorboard": False},
        "sample": {"steps": 4, "group_size": 4, "groups_per_step": 2, "batch_size": 4},
        "train": {"steps": 2, "batch_size": 4, "lr": 1e-2},
        "algorithm": {"name": "grpo", "beta": 0.04},
        "eval": {"every": 1, "num_prompts": 4, "steps": 4, "batch_size": 4, "grid_images": 4},
        "checkpoint": {"every": 1},
        "ema": {"every": 1},
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return raw


def tiny_config(model: str, run_dir: str, overrides: list[str] | None = None, **sections):
    return load_config(raw=tiny_raw(model, run_dir, **sections), overrides=overrides)
