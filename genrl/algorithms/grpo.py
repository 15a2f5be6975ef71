"""Flow-GRPO (Liu et al., arXiv 2505.05470) on the one loop, as the reference code does it.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.

Rollout: an SDE sampler (`sample.method` flow_grpo | cps | dance with `sample.noise_level`) records the whole
trajectory and the per-step Gaussian log-probs log pi_old(x_s | x_t) (per-element MEAN, fp32, no grad).
Fast/window variant: with `sample.sde_window_size` w > 0 a window start ~ UniformInt[lo, hi - w] is drawn per
rollout batch as the reference does (`algorithm.window_per: batch`; seeded per global batch, so N processes draw
what one process would) or once per step (`step`: shared by all batches); only the window's steps are stochastic
and trained (the rest are Euler). The batch keeps a per-sample mask `sde_mask` [B, T]; a training micro-batch
that mixes windows trains each step j on the samples whose window holds j.

Loss, per micro-batch and per trained step j (one backward per (micro-batch, j); each term is / n_train):

    ratio_j  = exp(log pi_theta(x_s | x_t) - log pi_old(x_s | x_t))
    L_policy = mean_batch max(-A ratio_j, -A clip(ratio_j, 1 - eps, 1 + eps))          eps = clip_range (1e-4)
    L_KL     = mean_batch [ mean_elements (mu_theta - mu_ref)^2 / (2 sigma_t^2) ]       ref = adapter disabled
    L        = L_policy + beta L_KL

L_KL is the reference's CODE form: for the flow SDE (and Dance) sigma_t^2 = std^2 / h with std the step's noise std
(the exact per-element KL of the two step Gaussians times h); for CPS the reference divides by the step variance
itself, sigma_t^2 = std^2. So the published beta values transfer.

Trained steps: the first int(T * timestep_fraction) SDE steps (reference 9 of 10; the sharp last step is
skipped), or all window steps. CFG (sample.cfg_scale > 1) is recomputed in training with the same
concatenated forward as the rollout. `detach_uncond` (default False, as the reference's later train_sd3.py)
stops the gradient through the unconditional branch (the July-2025 version detached it). With cfg_scale 1
this is the no-CFG recipe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

import samplers
from genrl.algorithms.base import Algorithm, AlgorithmConfig, Batch, RolloutSpec, StepContext, register_algorithm
from genrl.rollout import flow_rollout, velocity_fn


@dataclass
class GRPOConfig(AlgorithmConfig):
    """`algorithm:` section for Flow-GRPO (reference defaults, SD3.5-M)."""

    name: str = "grpo"
    clip_range: float = 1e-4  # PPO clip on per-step ratios (1e-5 for fast/nocfg/CPS recipes)
    beta: float = 0.04  # KL coefficient (GenEval/OCR 0.04, PickScore 0.01, fast/nocfg 0); 0 skips the ref forward
    timestep_fraction: float = 0.99  # train int(steps * fraction) SDE steps (ignored with an SDE window)
    detach_uncond: bool = False  # stop the gradient through the CFG unconditional branch in training
    window_per: str = "batch"  # SDE window drawn per rollout batch (the reference) | per step (shared by all)

    def __post_init__(self):
        if self.window_per not in ("batch", "step"):
            raise ValueError(f"algorithm.window_per must be batch or step, got {self.window_per!r}")


def trained_mask(sde_mask: torch.Tensor, timestep_fraction: float, windowed: bool) -> torch.Tensor:
    """[B, T] bool: the steps to train per sample: all stochastic window steps, or the stochastic steps among the
    first int(T * fraction) (sde_mask: [B, T] or [T])."""
    m = sde_mask.reshape(-1, sde_mask.shape[-1]).bool()
    if windowed:
        return m
    n = max(1, int(m.shape[-1] * timestep_fraction))
    return m & (torch.arange(m.shape[-1]) < n)


def ppo_clip_loss(adv: torch.Tensor, ratio: torch.Tensor, clip_range: float) -> torch.Tensor:
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


def kl_code_form(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor, h: torch.Tensor,
                 kind: str = "flow_grpo") -> torch.Tensor:
    """[B] mean_elements (mu - mu_ref)^2 / (2 sigma_t^2) with sigma_t^2 = std^2 / h, or std^2 for CPS (the
    reference's forms); 0 where std == 0."""
    dims = tuple(range(1, mean.ndim))
    d2 = ((mean - mean_ref) ** 2).mean(dim=dims)
    var_t = std.reshape(std.shape[0]) ** 2
    if kind != "cps":
        var_t = var_t / h
    return torch.where(var_t > 0, d2 / (2 * var_t.clamp_min(1e-20)), torch.zeros_like(d2))


@register_algorithm("grpo")
class GRPO(Algorithm):
    """Flow-GRPO: SDE rollouts with stored log-probs; PPO-clip on per-step ratios + KL to the base model."""

    Config = GRPOConfig

    def __init__(self, config: GRPOConfig, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        if sample_cfg.method not in samplers.SDE_KINDS:
            raise ValueError(
                f"Flow-GRPO needs an SDE sampler with log-probs: set sample.method to one of {samplers.SDE_KINDS} "
                f"(got {sample_cfg.method!r})"
            )
        if not sample_cfg.noise_level > 0:
            raise ValueError("Flow-GRPO needs sample.noise_level > 0 (reference: 0.7; CPS 0.8)")
        if not 0 < config.timestep_fraction <= 1:
            raise ValueError(f"algorithm.timestep_fraction must be in (0, 1], got {config.timestep_fraction}")
        if config.clip_range <= 0:
            raise ValueError(f"algorithm.clip_range must be > 0, got {config.clip_range} (reference 1e-4)")

    def rollout_spec(self) -> RolloutSpec:
        s = self.sample_cfg
        return RolloutSpec(
            method=s.method, noise_level=s.noise_level, sde_window=None, record="trajectory",
            cfg_scale=s.cfg_scale, steps=s.steps, shift=s.shift, same_noise=s.same_noise,
        )

    def draw_window(self, ctx: StepContext) -> tuple[int, int] | None:
        """(start, size) of the SDE window, start ~ UniformInt[lo, hi - w]: from the rollout batch's own rng
        (window_per=batch, the reference; the loop seeds it per global batch) or from (run.seed, step)
        (window_per=step: every batch on every rank of a step shares it)."""
        s = self.sample_cfg
        w = s.sde_window_size
        if w <= 0:
            return None
        lo, hi = s.sde_window_range if s.sde_window_range is not None else (0, s.steps)
        rng = ctx.rng if self.config.window_per == "batch" else random.Random(f"sde-window-{ctx.seed}-{ctx.step}")
        return rng.randint(lo, hi - w), w

    def rollout(self, policy, prompts: list[str], groups: torch.Tensor, ctx: StepContext) -> Batch:
        spec = self.rollout_spec()
        spec.sde_window = self.draw_window(ctx)
        b = flow_rollout(policy, prompts, groups, spec, ctx, resolution=self.sample_cfg.resolution)
        b.sde_mask = b.sde_steps.reshape(1, -1).expand(len(prompts), -1).clone()  # per sample: windows may differ
        b.sde_steps = None
        return b

    def losses(self, policy, mb: Batch, ctx: StepContext):
        cfg, s = self.config, self.sample_cfg
        dev = ctx.device
        sig = mb.sigmas.to(dev, torch.float32)
        mask = trained_mask(mb.sde_mask, cfg.timestep_fraction, windowed=s.sde_window_size > 0)
        n_b = mask.sum(1)  # trained steps per sample: the window size, or the fraction's count, for every sample
        if (n_b != n_b[0]).any():
            raise ValueError("Flow-GRPO: samples of a micro-batch have different numbers of trained steps")
        n, size = int(n_b[0]), len(mb)
        for j in [j for j in range(mask.shape[1]) if mask[:, j].any()]:
            m = mask[:, j]
            sub = mb if bool(m.all()) else mb.select(torch.nonzero(m).reshape(-1))
            # each term is / (B n): summed over the steps of a sample this averages its n trained steps
            scale = 1.0 / n if sub is mb else len(sub) / (size * n)
            loss, metrics = self._step_loss(policy, sub, j, sig, ctx)
            yield loss * scale, metrics

    def _step_loss(self, policy, mb: Batch, j: int, sig: torch.Tensor, ctx: StepContext):
        """The batch-mean loss of trained step j for the samples of `mb` and its metrics."""
        cfg, s = self.config, self.sample_cfg
        dev = ctx.device
        vfn = velocity_fn(policy, mb.cond, mb.get("uncond"), s.cfg_scale, ctx, cfg.detach_uncond)
        x = mb.latents[:, j].to(dev, torch.float32)
        x_next = mb.latents[:, j + 1].to(dev, torch.float32)
        old_lp = mb.log_probs[:, j].to(dev, torch.float32)
        t, t_next = sig[j], sig[j + 1]
        adv = self.stage_advantages(mb.advantages.to(dev, torch.float32), t)
        mean_ref = None
        if cfg.beta > 0:
            with ctx.no_autograd(), policy.disable_adapter():
                v_ref = vfn(x, t)
            mean_ref, _ = samplers.sde_mean_std(v_ref, x, t, t_next, kind=s.method, noise_level=s.noise_level)
        v = vfn(x, t)
        step = samplers.sde_step(v, x, t, t_next, kind=s.method, noise_level=s.noise_level, prev_sample=x_next)
        log_ratio = step.log_prob - old_lp
        ratio = torch.exp(log_ratio)
        policy_loss = ppo_clip_loss(adv, ratio, cfg.clip_range)
        loss = policy_loss
        kl = torch.zeros((), device=dev)
        if mean_ref is not None:
            kl = kl_code_form(step.mean, mean_ref, step.std, t - t_next, s.method).mean()
            loss = loss + cfg.beta * kl
        with torch.no_grad():
            metrics = {
                "policy_loss": policy_loss.item(),
                "kl_loss": kl.item(),
                "approx_kl": (0.5 * log_ratio.pow(2).mean()).item(),
                "clipfrac": ((ratio - 1).abs() > cfg.clip_range).float().mean().item(),
                "ratio_mean": ratio.mean().item(),
                "ratio_max_dev": (ratio - 1).abs().max().item(),
            }
        return loss, metrics
