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

from dataclasses import dataclass

import torch

from genrl.algorithms.base import Algorithm, AlgorithmConfig, Batch, StepContext, register_algorithm
from genrl.ema import soft_update_

# ----------------------------------------------------------------------------------------------------------------
# Pure math (tested against hand-computed cases in tests/test_nft_math.py)
# ----------------------------------------------------------------------------------------------------------------


ADV_MODES = ("all", "positive_only", "negative_only", "one_only", "binary")


def optimality_probability(advantages: torch.Tensor, adv_clip_max: float = 5.0, adv_mode: str = "all") -> torch.Tensor:
    """r = clip(0.5 + A / (2 adv_clip_max), 0, 1) with A first clipped to +-adv_clip_max and then, by `adv_mode`
    (the reference's options): all (as is), positive_only (max(A, 0)), negative_only (min(A, 0)), one_only
    (1 if A > 0 else 0) or binary (sign A). With "all": A = -adv_clip_max -> 0, A = 0 -> 0.5, +adv_clip_max -> 1."""
    if adv_clip_max <= 0:
        raise ValueError(f"adv_clip_max must be > 0, got {adv_clip_max}; the reference uses 5")
    a = advantages.float().clamp(-adv_clip_max, adv_clip_max)
    if adv_mode == "positive_only":
        a = a.clamp_min(0.0)
    elif adv_mode == "negative_only":
        a = a.clamp_max(0.0)
    elif adv_mode == "one_only":
        a = (a > 0).float()
    elif adv_mode == "binary":
        a = torch.sign(a)
    elif adv_mode != "all":
        raise ValueError(f"unknown NFT adv_mode {adv_mode!r}; choose one of {', '.join(ADV_MODES)}")
    return (0.5 + a / (2.0 * adv_clip_max)).clamp(0.0, 1.0)


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


# ----------------------------------------------------------------------------------------------------------------
# The algorithm on the one loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class NFTConfig(AlgorithmConfig):
    """`algorithm:` section for DiffusionNFT (reference defaults, SD3.5-M GenEval/PickScore)."""

    name: str = "nft"
    beta: float = 1.0  # NFT mixing coefficient of v+/v- (0.1 for OCR and multi-reward)
    kl_beta: float = 1e-4  # weight of mean (v_theta - v_base)^2 (train.beta in the reference); 0 disables
    adv_clip_max: float = 5.0  # r = clip(0.5 + A / (2 adv_clip_max), 0, 1); also the loss scale
    adv_mode: str = "all"  # all | positive_only | negative_only | one_only | binary (the reference's options)
    timestep_fraction: float = 0.99  # train int(N * fraction) of the N rollout-grid times per sample
    decay_type: int = 1  # old-policy soft-update schedule: 0 on-policy, 1 default, 2 OCR

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"algorithm.beta must be > 0, got {self.beta}; the reference uses 1.0 (OCR: 0.1)")
        old_policy_decay(0, self.decay_type)  # validates decay_type
        if self.adv_mode not in ADV_MODES:
            raise ValueError(f"algorithm.adv_mode {self.adv_mode!r} unknown; choose one of {', '.join(ADV_MODES)}")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError(f"algorithm.timestep_fraction must be in (0, 1], got {self.timestep_fraction}")


@register_algorithm("nft")
class NFT(Algorithm):
    """DiffusionNFT: rollouts by the old policy with any sampler, clean samples only, loss on re-noised samples."""

    Config = NFTConfig

    def __init__(self, config: NFTConfig, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        if sample_cfg.cfg_scale != 1.0:
            raise ValueError(f"DiffusionNFT is CFG-free (the reference trains and samples with guidance 1.0); set "
                             f"sample.cfg_scale=1 (eval.cfg_scale may still differ), got {sample_cfg.cfg_scale}")
        self.old: dict[str, torch.Tensor] | None = None  # theta_old (trainable tensors)

    def setup(self, policy, ctx: StepContext) -> None:
        if self.old is None:
            self.old = policy.trainable_state()
        else:  # resumed from a checkpoint (CPU tensors): keep it next to the weights
            params = dict(policy.named_parameters())
            self.old = {k: v.to(params[k].device, params[k].dtype) for k, v in self.old.items()}

    def rollout(self, policy, prompts, groups, ctx: StepContext) -> Batch:
        with policy.use_trainable(self.old):  # data is collected by the old policy
            return super().rollout(policy, prompts, groups, ctx)

    def losses(self, policy, mb: Batch, ctx: StepContext):
        cfg = self.config
        x0 = mb.samples.to(ctx.device, torch.float32)
        b = x0.shape[0]
        grid = self.rollout_grid(mb)
        times = grid_timestep_choices(grid, b, cfg.timestep_fraction, ctx.generator)  # [B, n_train]
        adv = mb.advantages.float().to(ctx.device)
        n_train = times.shape[1]
        for j in range(n_train):
            t = times[:, j].to(ctx.device)
            r = optimality_probability(self.stage_advantages(adv, t), cfg.adv_clip_max, cfg.adv_mode)
            eps = torch.randn(x0.shape, generator=ctx.generator, device=ctx.generator.device).to(ctx.device)
            tb = t.reshape(-1, *([1] * (x0.ndim - 1)))
            x_t = (1 - tb) * x0 + tb * eps
            # no-grad forwards first: use_trainable swaps parameter values in place, which must not happen
            # between the grad forward and its backward
            with ctx.no_autograd(), ctx.amp():
                with policy.use_trainable(self.old):
                    v_old = policy.velocity(x_t, t, mb.cond)
                v_ref = None
                if cfg.kl_beta > 0:
                    with policy.disable_adapter():
                        v_ref = policy.velocity(x_t, t, mb.cond)
            with ctx.amp():
                v_theta = policy.velocity(x_t, t, mb.cond)
            loss, metrics = nft_loss(x0, x_t, t, v_theta, v_old, r, cfg.beta, cfg.adv_clip_max, v_ref, cfg.kl_beta)
            yield loss / n_train, metrics

    def after_step(self, policy, ctx: StepContext) -> None:
        eta = old_policy_decay(ctx.update, self.config.decay_type)
        soft_update_(self.old, policy.trainable_state(), eta)
        ctx.extra["nft_old_decay"] = eta

    def state_dict(self) -> dict:
        return {"old": {k: v.detach().cpu() for k, v in (self.old or {}).items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("old"):
            self.old = {k: v.clone() for k, v in state["old"].items()}
