"""DiffusionNFT (Zheng et al., arXiv 2509.16117; code NVlabs/DiffusionNFT @24af555), reimplemented from the
reference notes (flow_methods.md §2).

Time convention: t = sigma in [0, 1], t = 1 is noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0,
x0_hat = x_t - t v.

The method, top to bottom:
  1. Rollout with ANY sampler (default: the deterministic 2nd-order multistep DPM-Solver++(2M), no CFG), run by
     the "old" policy theta_old (a soft copy of the trainable weights). Only the clean final samples x0 are kept.
  2. reward -> group-relative advantage A (clipped to +-adv_clip_max) -> optimality probability
         r = clip(0.5 + A / (2 adv_clip_max), 0, 1).
  3. On re-noised clean samples x_t = (1 - t) x0 + t eps (fresh eps; t from the rollout grid, a per-sample random
     permutation of the grid, first int(N * timestep_fraction) used), with beta = the NFT mixing coefficient:
         v+ = beta v_theta + (1 - beta) v_old          implicit positive policy
         v- = (1 + beta) v_old - beta v_theta          implicit negative policy
         x0± = x_t - t v±,  w± = sg(mean|x0± - x0|) clamped >= 1e-5 (per sample),  l± = mean (x0± - x0)^2 / w±
         L = adv_clip_max * mean_batch[(r l+ + (1 - r) l-) / beta] + kl_beta * mean (v_theta - v_ref)^2
     (the reference's x0-space, adaptively weighted form; adv_clip_max is a plain scale there.)
  4. After each optimizer step: theta_old <- eta theta_old + (1 - eta) theta, eta from `old_policy_decay`.
All means are per-element means (then over the batch), as in the reference code.
"""

from __future__ import annotations

import torch

# ----------------------------------------------------------------------------------------------------------------
# Pure math (tested against hand-computed cases in tests/test_nft_math.py)
# ----------------------------------------------------------------------------------------------------------------


def optimality_probability(advantages: torch.Tensor, adv_clip_max: float = 5.0) -> torch.Tensor:
    """r = clip(0.5 + A / (2 adv_clip_max), 0, 1): A = -adv_clip_max -> 0, A = 0 -> 0.5, A = +adv_clip_max -> 1."""
    if adv_clip_max <= 0:
        raise ValueError(f"adv_clip_max must be > 0, got {adv_clip_max}; the reference uses 5")
    return (0.5 + advantages.float() / (2.0 * adv_clip_max)).clamp(0.0, 1.0)


def implicit_velocities(v_theta: torch.Tensor, v_old: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(v+, v-) = (beta v_theta + (1 - beta) v_old, (1 + beta) v_old - beta v_theta); note v+ + v- = 2 v_old."""
    return beta * v_theta + (1.0 - beta) * v_old, (1.0 + beta) * v_old - beta * v_theta


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def adaptive_x0_loss(x0_pred: torch.Tensor, x0: torch.Tensor, min_weight: float = 1e-5) -> torch.Tensor:
    """Per-sample mean (x0_pred - x0)^2 / sg(mean |x0_pred - x0|) (weight clamped at min_weight). Shape [B]."""
    diff = x0_pred - x0
    w = _per_sample_mean(diff.abs()).detach().clamp_min(min_weight)
    return _per_sample_mean(diff.square()) / w


def nft_loss(
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    v_theta: torch.Tensor,
    v_old: torch.Tensor,
    r: torch.Tensor,
    beta: float,
    adv_clip_max: float = 5.0,
    v_ref: torch.Tensor | None = None,
    kl_beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DiffusionNFT loss on one micro-batch (one training time per sample), in fp32.

    x0, x_t, v_*: [B, ...]; t, r: [B]. v_old (and v_ref) must come from no-grad forwards. Returns (loss, metrics).
    """
    if beta <= 0:
        raise ValueError(f"NFT beta must be > 0, got {beta}; the reference uses 1.0 (0.1 for OCR)")
    f32 = torch.float32
    x0, x_t, v_theta, v_old = x0.to(f32), x_t.to(f32), v_theta.to(f32), v_old.to(f32)
    tb = t.to(f32).reshape(-1, *([1] * (x0.ndim - 1)))
    v_pos, v_neg = implicit_velocities(v_theta, v_old.detach(), beta)
    loss_pos = adaptive_x0_loss(x_t - tb * v_pos, x0)
    loss_neg = adaptive_x0_loss(x_t - tb * v_neg, x0)
    r = r.to(f32)
    policy_loss = adv_clip_max * ((r * loss_pos + (1.0 - r) * loss_neg) / beta).mean()
    loss = policy_loss
    metrics = {
        "policy_loss": policy_loss.item(),
        "loss_pos": loss_pos.mean().item(),
        "loss_neg": loss_neg.mean().item(),
        "r_mean": r.mean().item(),
    }
    if kl_beta > 0:
        if v_ref is None:
            raise ValueError("kl_beta > 0 needs v_ref (the base model's velocity, LoRA disabled)")
        kl = (v_theta - v_ref.to(f32).detach()).square().mean()
        loss = loss + kl_beta * kl
        metrics["kl_loss"] = kl.item()
    metrics["loss"] = loss.item()
    return loss, metrics


def old_policy_decay(step: int, decay_type: int = 1) -> float:
    """eta for theta_old <- eta theta_old + (1 - eta) theta, after optimizer step number `step` (reference
    return_decay): type 0: 0 (on-policy); type 1: min(0.001 step, 0.5); type 2: 0 before step 75, then
    min(0.0075 (step - 75), 0.999)."""
    if decay_type == 0:
        return 0.0
    if decay_type == 1:
        return min(0.001 * step, 0.5)
    if decay_type == 2:
        return 0.0 if step < 75 else min(0.0075 * (step - 75), 0.999)
    raise ValueError(f"unknown old-policy decay_type {decay_type!r}; choose 0 (on-policy), 1 (default) or 2 (OCR)")


@torch.no_grad()
def soft_update_(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], decay: float) -> None:
    """In place: target <- decay target + (1 - decay) source (for every key of target)."""
    for k, v in target.items():
        v.mul_(decay).add_(source[k].detach().to(v.dtype), alpha=1.0 - decay)


def grid_timestep_choices(
    grid: torch.Tensor, batch: int, timestep_fraction: float = 0.99, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample random permutations of the rollout grid's timesteps (the grid without its final 0), truncated to
    int(N * timestep_fraction) columns: [batch, n_train] sigmas. Column j is the time of inner iteration j."""
    grid = grid[grid > 0]
    n = grid.numel()
    n_train = max(1, int(n * timestep_fraction))
    perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(batch)])
    return grid[perms[:, :n_train]]
