"""Exponential moving average of the trainable weights (the reference's EMAModuleWrapper), used for evaluation
and for the weights a checkpoint exports; never for sampling rollouts.

    effective decay d = min((1 + n) / (10 + n), decay),   shadow <- d * shadow + (1 - d) * theta

applied on every `every`-th optimizer update (n = number of updates so far; reference: decay 0.9, every 8).
"""

from __future__ import annotations

import torch


class EMA:
    def __init__(self, state: dict[str, torch.Tensor], decay: float = 0.9, every: int = 8):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"ema.every must be >= 1, got {every}")
        self.decay, self.every = decay, every
        self.shadow = {k: v.detach().clone().float() for k, v in state.items()}

    def effective_decay(self, n: int) -> float:
        return min((1.0 + n) / (10.0 + n), self.decay)

    @torch.no_grad()
    def step(self, state: dict[str, torch.Tensor], n_updates: int) -> bool:
        """Call after every optimizer update with the number of updates done; returns whether it applied."""
        if n_updates % self.every:
            return False
        d = self.effective_decay(n_updates)
        for k, v in state.items():
            self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)
        return True

    def state_for(self, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The shadow weights cast to the dtypes/devices of `like` (for policy.use_trainable)."""
        return {k: self.shadow[k].to(like[k].device, like[k].dtype) for k in like}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state is missing {len(missing)} tensors (e.g. {sorted(missing)[0]})")
        self.shadow = {k: state[k].detach().clone().float() for k in self.shadow}


@torch.no_grad()
def soft_update_(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], decay: float) -> None:
    """In place: target <- decay target + (1 - decay) source (for every key of target)."""
    for k, v in target.items():
        v.mul_(decay).add_(source[k].detach().to(v.device, v.dtype), alpha=1.0 - decay)
