"""Exponential moving average of the trainable weights (the reference's EMAModuleWrapper), used for evaluation
and for the weights a checkpoint exports; never for sampling rollouts.

    effective decay d = min((1 + n) / (10 + n), decay),   shadow <- d * shadow + (1 - d) * theta

applied on every `every`-th optimizer update (n = number of updates so far; reference: decay 0.9, every 8).

cadence "update" (genrl's default): one application after update n when n % every == 0. cadence "reference":
Flow-GRPO's own schedule, stepped after EVERY training micro-batch with n = updates done at that moment and
applied when (n + 1) % every == 0; it therefore applies once per micro-batch of an update, a count that depends
on micro-batches per update (and so on the GPU count). The loop calls `step` with `micro_batch=True` for that.
"""

from __future__ import annotations

import torch


class EMA:
    CADENCES = ("update", "reference")

    def __init__(self, state: dict[str, torch.Tensor], decay: float = 0.9, every: int = 8, cadence: str = "update"):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"ema.every must be >= 1, got {every}")
        if cadence not in self.CADENCES:
            raise ValueError(f"ema.cadence must be one of {', '.join(self.CADENCES)}, got {cadence!r}")
        self.decay, self.every, self.cadence = decay, every, cadence
        self.shadow = {k: v.detach().clone().float() for k, v in state.items()}

    def effective_decay(self, n: int) -> float:
        return min((1.0 + n) / (10.0 + n), self.decay)

    @torch.no_grad()
    def step(self, state, n_updates: int, micro_batch: bool = False) -> bool:
        """cadence "update": call after every optimizer update (micro_batch=False) with the number of updates done.
        cadence "reference": call after every training micro-batch (micro_batch=True; for the last micro-batch of
        an update, after the update). Calls of the other kind are ignored. `state`: the trainable tensors, or a
        callable returning them (evaluated only when the EMA applies). Returns whether it applied."""
        if micro_batch != (self.cadence == "reference"):
            return False
        if (n_updates + 1 if micro_batch else n_updates) % self.every:
            return False
        d = self.effective_decay(n_updates)
        for k, v in (state() if callable(state) else state).items():
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
