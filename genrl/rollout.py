"""Image-flow rollouts: conditioning, (optionally group-shared) noise, CFG velocity, samplers.sample, decode.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.
CFG: v = v_u + w (v_c - v_u) with the empty prompt as the negative; cond and uncond go through ONE
concatenated forward (uncond first), both at rollout and when an algorithm recomputes it in training, so the
two passes see identical batch shapes (rollout/training log-probs agree exactly on CPU).
"""

from __future__ import annotations

import torch

import samplers
from genrl.algorithms.base import Batch, RolloutSpec, StepContext


def cat_cond(a: dict, b: dict) -> dict:
    return {k: torch.cat([a[k], b[k]]) if isinstance(a[k], torch.Tensor) else a[k] for k in a}


def velocity_fn(policy, cond: dict, uncond: dict | None, cfg_scale: float, ctx: StepContext,
                detach_uncond: bool = False):
    """velocity(x, sigma) for the sampler / training: the policy's velocity with CFG when cfg_scale != 1.
    Returned in float32 (SDE math is fp32); the model itself runs under the accelerator's autocast."""

    both = cat_cond(uncond, cond) if uncond is not None and cfg_scale != 1.0 else None  # once, not per call

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with ctx.amp():
            if both is not None:
                sig = sigma if sigma.ndim == 0 else torch.cat([sigma, sigma])
                v = policy.velocity(torch.cat([x, x]), sig, both).float()
                v_u, v_c = v.chunk(2)
                if detach_uncond:
                    v_u = v_u.detach()
                return samplers.cfg(v_u, v_c, cfg_scale)
            return policy.velocity(x, sigma, cond).float()

    return fn


def without_autograd(fn, ctx: StepContext):
    """fn(x, sigma) under `ctx.no_autograd()` (torch.inference_mode unless ctx.inference_mode is off): for sampling
    whose outputs never need a gradient. The samplers' out-of-place steps turn the velocities into ordinary tensors,
    so the trajectory a trainer later differentiates through holds none."""

    def run(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with ctx.no_autograd():
            return fn(x, sigma)

    return run


def policy_sigmas(policy, steps: int, shift: float | None, resolution: int | None) -> torch.Tensor:
    """The sigma grid: the adapter's own (`policy.sigmas(steps, shift, resolution)`, e.g. FLUX dynamic shift; with
    shift=None the model scheduler's own shift, e.g. 3.0 for SD3.5) when it defines one, else
    samplers.flow_sigmas(steps, shift) (shift None -> 1.0)."""
    if hasattr(policy, "sigmas"):
        return policy.sigmas(steps, shift, resolution)
    return samplers.flow_sigmas(steps, 1.0 if shift is None else shift)


def make_noise(policy, n: int, groups: torch.Tensor, spec: RolloutSpec, ctx: StepContext,
               resolution: int | None) -> torch.Tensor:
    shape = tuple(policy.noise_shape(n, resolution))
    if not spec.same_noise:
        return torch.randn(shape, generator=ctx.generator, device=ctx.generator.device).to(ctx.device)
    per = []
    for g in groups.tolist():  # same noise for a whole group, on every rank
        gen = torch.Generator().manual_seed(hash((ctx.seed, ctx.step, int(g))) & 0x7FFFFFFF)
        per.append(torch.randn(shape[1:], generator=gen))
    return torch.stack(per).to(ctx.device)


@torch.no_grad()
def flow_rollout(policy, prompts: list[str], groups: torch.Tensor, spec: RolloutSpec, ctx: StepContext,
                 resolution: int | None = None) -> Batch:
    """Sample `prompts` with `spec`; returns a Batch with prompts, group, metadata, cond, uncond, samples,
    images, sigmas and, for record="trajectory", latents [B, T+1, ...], log_probs [B, T], sde_steps [T]."""
    n = len(prompts)
    cond = policy.encode(prompts)
    uncond = policy.encode([""] * n) if spec.cfg_scale != 1.0 else None
    noise = make_noise(policy, n, groups, spec, ctx, resolution)
    sigmas = policy_sigmas(policy, spec.steps, spec.shift, resolution)
    sde, stochastic = spec.method in samplers.SDE_KINDS, spec.method in samplers.STOCHASTIC_METHODS
    vfn = without_autograd(velocity_fn(policy, cond, uncond, spec.cfg_scale, ctx), ctx)
    res = samplers.sample(
        vfn, noise, sigmas, method=spec.method, noise_level=spec.noise_level if stochastic else 0.0,
        sde_window=spec.sde_window if sde else None, record=spec.record, generator=ctx.generator,
    )
    images = policy.decode(res.samples).float().clamp(0, 1)
    fields = dict(
        prompts=list(prompts), group=groups.clone(), metadata=policy.metadata_for(list(prompts)), cond=cond,
        samples=res.samples, images=images, sigmas=res.sigmas.cpu(),
    )
    if uncond is not None:
        fields["uncond"] = uncond
    if spec.record == "trajectory":
        fields["sde_steps"] = res.sde_steps  # shared: every batch of a step must use the same window
        fields["latents"] = res.latents.transpose(0, 1).contiguous()  # [B, T+1, ...]
        fields["log_probs"] = res.log_probs.transpose(0, 1).contiguous()  # [B, T]
    return Batch(**fields)
