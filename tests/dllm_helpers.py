"""Shared helpers for the dLLM tests: a tiny random puzzles-world model saved with save_pretrained."""

from __future__ import annotations

import os

from genrl.config import load_config


def tiny_dllm(directory: str, seed: int = 0) -> str:
    """A ~30k-parameter bidirectional Gemma mask predictor + the puzzles tokenizer, saved to `directory`."""
    if not os.path.isfile(os.path.join(directory, "config.json")):
        from genrl.worlds.puzzles.model import PuzzlesModelConfig, build_model, build_tokenizer

        tok = build_tokenizer()
        model = build_model(PuzzlesModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64), len(tok),
                            tok.pad_token_id, tok.eos_token_id, seed=seed)
        model.save_pretrained(directory)
        tok.save_pretrained(directory)
    return directory


def tiny_dllm_raw(model: str, run_dir: str, algo: dict, **sections) -> dict:
    raw = {
        "model": {"path": model, "lora_rank": 4},
        "run": {"dir": run_dir, "seed": 0, "tensorboard": False},
        "data": {"prompts": "sudoku:train"},
        "sample": {"group_size": 4, "groups_per_step": 2, "batch_size": 4},
        "advantage": {"global_std": False, "filter_zero_std": False},
        "train": {"steps": 2, "batch_size": 4, "lr": 1e-2},
        "algorithm": {"response_length": 16, "block_length": 8, "diffusion_steps": 4, "temperature": 1.0,
                      **algo},
        "rewards": {"sudoku": 1.0, "test_digit_ones": 1.0},  # sudoku scores 0 on random models: add a dense term
        "reward_options": {"sudoku": {"partial": True}},
        "ema": {"enabled": False},
        "eval": {"every": 1, "prompts": "sudoku:eval", "num_prompts": 4, "batch_size": 4, "grid_images": 4},
        "checkpoint": {"every": 1},
    }
    for k, v in sections.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return raw


def tiny_dllm_config(model: str, run_dir: str, algo: dict, overrides: list[str] | None = None, **sections):
    return load_config(raw=tiny_dllm_raw(model, run_dir, algo, **sections), overrides=overrides)


def _register_test_reward() -> None:
    """`test_digit_ones`: the fraction of '1' characters in a completion, a dense signal on random models."""
    import torch

    from rewards.base import Reward, RewardOutput
    from rewards.registry import available, register

    if "test_digit_ones" in available():
        return

    @register("test_digit_ones")
    class DigitOnes(Reward):
        name = "test_digit_ones"
        input_format = "text"
        batch_size = 1024

        def score(self, samples, prompts, metadata):
            return RewardOutput(torch.tensor([s.count("1") / max(1, len(s)) for s in samples]), {})


_register_test_reward()
