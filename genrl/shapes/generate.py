"""Sampling images from a flow policy with samplers.sample (ODE by default), with classifier-free guidance.

Convention: t = sigma in [0, 1], t = 1 noise; sampling integrates from sigma = 1 to 0 on the model's grid
(genrl.rollout.policy_sigmas: the adapter's own schedule, shift=None = its scheduler's shift, else
samplers.flow_sigmas(steps, shift)). CFG: v = samplers.cfg(v(x | ""), v(x | prompt), cfg_scale) (one batched
forward of [uncond; cond]); cfg_scale = 1 is plain conditional sampling. Determinism: the initial noise for
the whole prompt list is drawn from torch.Generator().manual_seed(seed), so the same seed and prompts give the
same images whatever the batch size. `velocity_fn_factory` lets callers (RL Guidance) replace the velocity.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import samplers

DEFAULT_STEPS = 20
DEFAULT_CFG = 1.0
DEFAULT_SHIFT = None  # the model's own scheduler shift (1.0 for the shapes world, 3.0 for SD3.5)


def cfg_velocity(policy, cond, uncond, cfg_scale: float) -> Callable:
    """velocity_fn(x, sigma) of `policy` with classifier-free guidance at `cfg_scale`."""
    if cfg_scale == 1.0:
        return lambda x, s: policy.velocity(x, s, cond)
    both = {k: torch.cat([uncond[k].expand_as(cond[k]), cond[k]]) for k in cond}

    def fn(x, s):
        v = policy.velocity(torch.cat([x, x]), s, both)
        v_u, v_c = v.chunk(2)
        return samplers.cfg(v_u, v_c, cfg_scale)

    return fn


@torch.no_grad()
def generate(policy, prompts: list[str], seed: int = 0, steps: int = DEFAULT_STEPS, cfg_scale: float = DEFAULT_CFG,
             method: str = "euler", shift: float | None = DEFAULT_SHIFT, batch_size: int = 64,
             resolution: int | None = None, velocity_fn_factory: Callable | None = None,
             noise_level: float = 0.0) -> torch.Tensor:
    """Images float [N, 3, H, W] in [0, 1] for `prompts` (see module docstring).

    An SDE `method` (e.g. "ddim" with noise_level 1 = DDPM-like eta = 1) draws its step noise from a generator seeded
    with seed + 1, chunk after chunk (so stochastic samples depend on batch_size; the ODE's do not).

    velocity_fn_factory(policy, cond, uncond) -> velocity_fn(x, sigma), if given, replaces cfg_velocity."""
    if not prompts:
        raise ValueError("generate: no prompts given")
    if steps < 1:
        raise ValueError(f"generate: steps must be >= 1, got {steps}")
    noise = torch.randn(policy.noise_shape(len(prompts), resolution), generator=torch.Generator().manual_seed(seed))
    from genrl.rollout import policy_sigmas

    sigmas = policy_sigmas(policy, steps, shift, resolution)
    uncond = policy.encode([""])
    out = []
    gen = torch.Generator(policy.device).manual_seed(seed + 1)
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        cond = policy.encode(chunk)
        if velocity_fn_factory is not None:
            fn = velocity_fn_factory(policy, cond, uncond)
        else:
            fn = cfg_velocity(policy, cond, uncond, cfg_scale)
        x = noise[i : i + batch_size].to(policy.device)
        res = samplers.sample(fn, x, sigmas, method=method, noise_level=noise_level, generator=gen)
        out.append(policy.decode(res.samples).cpu())
    return torch.cat(out)
