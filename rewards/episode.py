"""Environment-episode rewards: `episode_success` scores episode summaries by their success flag.

Samples are mappings (or objects) with a "success" entry (bool / 0-1 number) and optionally "return"; the score is
float(success) in {0, 1}; details carry "return" when present. Robot rollouts (genrl's pi_rl) score their own
episodes with this same rule (reward = 1 on the success step, else 0), so a config names this reward.
"""

from __future__ import annotations

import math

import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import register


def _get(sample, key):
    if isinstance(sample, dict):
        return sample.get(key)
    return getattr(sample, key, None)


@register("episode_success")
class EpisodeSuccess(Reward):
    name = "episode_success"

    def __init__(self, device=None, dtype=None):
        pass

    def __call__(self, samples, prompts, metadata=None) -> RewardOutput:
        samples = list(samples)
        if len(samples) != len(prompts):
            raise ValueError(f"{self.name}: got {len(samples)} episodes but {len(prompts)} prompts")
        scores, rets = [], []
        for i, s in enumerate(samples):
            succ = _get(s, "success")
            if succ is None:
                raise ValueError(f"{self.name}: episode {i} has no 'success' entry; pass episode summaries")
            scores.append(float(bool(succ)) if not (isinstance(succ, float) and math.isnan(succ)) else float("nan"))
            r = _get(s, "return")
            rets.append(float(r) if r is not None else float("nan"))
        return RewardOutput(torch.tensor(scores), {"return": torch.tensor(rets)})
