"""Weighted sum of several rewards: score = sum_k w_k * raw_score_k (no per-reward normalisation, as in
Flow-GRPO's multi_score). Each component's raw scores are kept in details under its name; a weight-0 component
is scored and logged only. A NaN score (a sample the reward could not score) makes the sum NaN."""

from __future__ import annotations

import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import load


class CombinedReward(Reward):
    input_format = "raw"

    def __init__(self, weights: dict[str, float], options: dict[str, dict] | None = None):
        if not weights:
            raise ValueError("combine() needs at least one reward, e.g. {'ocr': 1.0}")
        options = options or {}
        extra = sorted(set(options) - set(weights))
        if extra:
            raise ValueError(f"combine(): options given for {extra}, which are not among the weighted rewards "
                             f"{sorted(weights)}")
        for k, v in weights.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
                raise ValueError(f"combine(): weight of {k!r} must be a number, got {v!r}")
        self.weights = {k: float(v) for k, v in weights.items()}
        self.rewards = {k: load(k, **options.get(k, {})) for k in weights}
        self.name = "+".join(f"{w:g}*{k}" for k, w in self.weights.items())

    def check_inputs(self, prompts, metadata=None) -> None:
        for reward in self.rewards.values():
            reward.check_inputs(prompts, metadata)

    def check_sample_format(self, sample_format: str) -> None:
        for reward in self.rewards.values():
            reward.check_sample_format(sample_format)

    def __call__(self, samples, prompts, metadata=None) -> RewardOutput:
        total, details = None, {}
        for name, reward in self.rewards.items():
            out = reward(samples, prompts, metadata)
            details[name] = out.scores
            for k, v in out.details.items():
                details[f"{name}/{k}"] = v
            if total is None:
                total = torch.zeros_like(out.scores, dtype=torch.float32)
            if self.weights[name] != 0:  # a weight-0 (logged only) reward's NaN (a failed judge) stays out of the sum
                total = total + out.scores.float() * self.weights[name]
        return RewardOutput(total, details)


def combine(weights: dict[str, float], options: dict[str, dict] | None = None) -> Reward:
    """`combine({"pickscore": 1.0, "ocr": 0.5})` -> a Reward giving the weighted sum of raw scores.
    `options` maps a reward name to its load() options."""
    return CombinedReward(weights, options)
