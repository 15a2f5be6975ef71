"""Group-relative advantages (Flow-GRPO's PerPromptStatTracker, reimplemented on prompt-group ids).

    A_i = (r_i - mean_{j in group(i)} r_j) / (std + eps),   population std (ddof = 0)

`global_std=True` uses the std of ALL rewards of the step (across prompts; the reference's SD3 default),
otherwise the std of the sample's own group. A is then clipped to [-clip, clip] (reference: 5). Stats are
per step: there is no history across steps. Always call these on rewards gathered from every rank, since a
group is spread over ranks. Rewards may also be [N, S] (hierarchical stages, genrl/hierarchy.py): advantages are then
computed per column, a group is zero-std only if it is in every column, and non-finite if any entry is.
"""

from __future__ import annotations

import torch


def group_stats(rewards: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample group mean and group population std, both [N] float32."""
    r = rewards.float()
    _, inv = torch.unique(groups, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    count = torch.zeros(n_groups).index_add_(0, inv, torch.ones_like(r))
    mean = torch.zeros(n_groups).index_add_(0, inv, r) / count
    var = torch.zeros(n_groups).index_add_(0, inv, (r - mean[inv]) ** 2) / count
    return mean[inv], var.sqrt()[inv]


def group_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, *, global_std: bool = True, clip: float | None = 5.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Advantages [N] (or [N, S]) from rewards [N] (or [N, S]) and prompt-group ids [N] (see module docstring)."""
    if rewards.ndim == 2:
        return torch.stack([group_advantages(r, groups, global_std=global_std, clip=clip, eps=eps)
                            for r in rewards.unbind(1)], 1)
    rewards = rewards.detach().float().cpu()
    groups = groups.detach().cpu()
    mean, std = group_stats(rewards, groups)
    if global_std:
        std = torch.full_like(rewards, rewards.std(unbiased=False).item() if rewards.numel() else 0.0)
    adv = (rewards - mean) / (std + eps)
    if clip is not None and clip > 0:
        adv = adv.clamp(-clip, clip)
    return adv


def zero_std_mask(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True for samples whose whole group has identical rewards (advantage 0 at every step;
    common for 0/1 rewards such as GenEval, OCR or the shapes world's strict score)."""
    if rewards.ndim == 2:
        return torch.stack([zero_std_mask(r, groups) for r in rewards.unbind(1)], 1).all(1)
    rewards = rewards.detach().float().cpu()
    _, inv = torch.unique(groups.detach().cpu(), return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    gmax = torch.full((n_groups,), -float("inf")).scatter_reduce(0, inv, rewards, "amax")
    gmin = torch.full((n_groups,), float("inf")).scatter_reduce(0, inv, rewards, "amin")
    return (gmax == gmin)[inv]


def nonfinite_group_mask(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Bool [N]: True for samples in a group that contains any non-finite reward (those groups are dropped)."""
    bad = ~torch.isfinite(rewards.detach().float().cpu())
    if bad.ndim == 2:
        bad = bad.any(1)
    groups = groups.detach().cpu()
    bad_groups = torch.unique(groups[bad])
    return torch.isin(groups, bad_groups)


def group_masks(rewards: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(good, zero), bool [N]: good = the sample's group has only finite rewards; zero = a good group whose rewards
    are all equal. rewards: [N], or [N, S] with hierarchical stages (zero-std in every stage)."""
    good = ~nonfinite_group_mask(rewards, groups)
    mask = good.reshape(-1, *[1] * (rewards.ndim - 1))
    return good, zero_std_mask(torch.where(mask, rewards, torch.zeros_like(rewards)), groups) & good
