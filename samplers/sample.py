"""Run a flow-matching model over a sigma schedule with an ODE or SDE method.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, velocity
v = eps - x0. `velocity_fn(x, sigma) -> v` gets x in the noise's dtype and sigma as a 0-d float32 tensor on x's
device (an adapter converts to its model's timestep convention, e.g. SD3 takes 1000 * sigma).

The state is carried in float32 between steps (all step math is float32); `.samples` and every recorded tensor
are float32. Log-probs are per-element MEANS over non-batch dims, shape [B] per step (see samplers.sde).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .ode import check_same_shape, dpm2_step, heun_step
from .sa_solver import sa_solver_grid, sa_solver_sample
from .schedules import check_sigmas
from .sde import SDE_KINDS, _check_noise_level, sde_step

ODE_METHODS = ("euler", "heun", "dpm2")
#: methods that take `noise_level`: the per-step-Gaussian SDEs (with log-probs) and SA-Solver (clean samples only)
STOCHASTIC_METHODS = SDE_KINDS + ("sa_solver",)
METHODS = ODE_METHODS + STOCHASTIC_METHODS
RECORDS = ("final", "trajectory")

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampleResult:
    """samples: final x at the last sigma (float32). With record="trajectory" also:
    latents [steps+1, B, ...] (latents[0] = noise), log_probs [steps, B] (0 on deterministic steps),
    means [steps, B, ...] (the step's mean; the next latent on ODE steps), stds [steps, B, 1, ..., 1] (0 on ODE
    steps), sigmas [steps+1]. sde_steps [steps] (bool) says which steps were stochastic."""

    samples: torch.Tensor
    sde_steps: torch.Tensor
    sigmas: torch.Tensor
    latents: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    means: torch.Tensor | None = None
    stds: torch.Tensor | None = None


def sde_window_mask(num_steps: int, sde_window: Sequence[int] | None) -> list[bool]:
    """Steps [start, start + size) are stochastic (Flow-GRPO-Fast / MixGRPO window); None = all steps."""
    if sde_window is None:
        return [True] * num_steps
    try:
        start, size = (int(w) for w in sde_window)
    except (TypeError, ValueError):
        raise ValueError(f"sde_window must be (start, size) or None, got {sde_window!r}") from None
    if start < 0 or size < 1 or start + size > num_steps:
        raise ValueError(f"sde_window (start, size) must satisfy 0 <= start, size >= 1, start + size <= "
                         f"{num_steps} (the number of steps), got {tuple(sde_window)}")
    return [start <= i < start + size for i in range(num_steps)]


def _velocity(velocity_fn: VelocityFn, x: torch.Tensor, sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    v = velocity_fn(x.to(dtype), sigma)
    check_same_shape(v, x, "velocity_fn output")
    return v


def sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    method: str = "euler",
    noise_level: float = 0.0,
    sde_window: Sequence[int] | None = None,
    record: str = "final",
    generator: torch.Generator | None = None,
) -> SampleResult:
    """Integrate from `noise` (x at sigmas[0]) to sigmas[-1] (usually 0).

    method: "euler", "heun" (2 velocity evaluations per step), "dpm2" (DPM-Solver++(2M), first and last steps
    first-order), an SDE kind "flow_grpo", "dance", "cps", "ddim" (samplers.sde) with `noise_level`, or
    "sa_solver" (samplers.sa_solver: AWM's reference rollout sampler, tau = `noise_level` for 0.3 <= t <= 0.9,
    final samples only, on the reference's adjusted grid: t[0] = 0.999, last nonzero t halved). For SDE methods,
    `sde_window=(start, size)` makes only those steps stochastic; the others are Euler. noise_level = 0 gives
    exactly the Euler sampler. Noise is drawn with torch.randn(..., generator=generator) in float32 on noise's
    device, so a seeded generator makes the result deterministic.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if record not in RECORDS:
        raise ValueError(f"record must be one of {RECORDS}, got {record!r}")
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point() or noise.ndim < 1:
        raise ValueError("noise must be a floating-point tensor with a leading batch dimension")
    a = _check_noise_level(noise_level)
    values = check_sigmas(sigmas)
    if method == "sa_solver":
        if record != "final" or sde_window is not None:
            raise ValueError("method='sa_solver' has no per-step log-probs and no SDE window: use record='final', "
                             "sde_window=None (its stochastic band is 0.3 <= t <= 0.9)")
        x = sa_solver_sample(velocity_fn, noise, values, tau=a, generator=generator)
        grid = sa_solver_grid(values)  # which steps inject noise (target t in the band); sigmas: the grid as given
        band = torch.tensor([a > 0 and 0.3 <= g <= 0.9 for g in grid[1:-1]] + [False], dtype=torch.bool)
        return SampleResult(samples=x, sde_steps=band, sigmas=torch.tensor(values, dtype=torch.float32,
                                                                            device=noise.device))
    steps = len(values) - 1
    is_sde = method in SDE_KINDS
    if not is_sde and (a != 0.0 or sde_window is not None):
        raise ValueError(f"noise_level and sde_window apply to the SDE methods {SDE_KINDS}; method={method!r} is an "
                         "ODE method (use noise_level=0.0, sde_window=None)")
    window = sde_window_mask(steps, sde_window)
    stochastic = [is_sde and a > 0.0 and w for w in window]

    device, model_dtype = noise.device, noise.dtype
    sig = (sigmas if isinstance(sigmas, torch.Tensor) else torch.tensor(values)).to(device, torch.float32)
    sig_steps = sig.unbind()  # 0-d views, made once (no per-step indexing / allocation)
    dts = (sig[1:] - sig[:-1]).unbind()  # s - t in float32, exactly as euler_step / diffusers compute it
    x = noise.float()
    traj = record == "trajectory"
    latents, log_probs, means, stds = [x], [], [], []
    prev_x0 = None
    for i in range(steps):
        t, s = sig_steps[i], sig_steps[i + 1]
        v = _velocity(velocity_fn, x, t, model_dtype)
        std = None
        if stochastic[i]:
            out = sde_step(v, x, t, s, kind=method, noise_level=a, generator=generator)
            x_next, mean, std, lp = out.prev_sample, out.mean, out.std, out.log_prob
        elif method == "heun":
            x_next = heun_step(lambda xx, ss: _velocity(velocity_fn, xx, ss, model_dtype), x, t, s, v=v)
        elif method == "dpm2":
            x_next, x0 = dpm2_step(v, x, values[i], values[i + 1], prev_x0=prev_x0,
                                   sigma_prev=values[i - 1] if i > 0 else None)
            prev_x0 = x0
        else:
            x_next = x + dts[i] * v.float()  # = euler_step(v, x, t, s), without re-validating per step
        if traj:
            if std is None:
                mean = x_next
                std = x.new_zeros((x.shape[0],) + (1,) * (x.ndim - 1))
                lp = x.new_zeros(x.shape[0])
            latents.append(x_next)
            means.append(mean)
            stds.append(std)
            log_probs.append(lp)
        x = x_next
    sde_steps = torch.tensor(stochastic, dtype=torch.bool)
    if not traj:
        return SampleResult(samples=x, sde_steps=sde_steps, sigmas=sig)
    return SampleResult(
        samples=x, sde_steps=sde_steps, sigmas=sig, latents=torch.stack(latents), log_probs=torch.stack(log_probs),
        means=torch.stack(means), stds=torch.stack(stds),
    )
