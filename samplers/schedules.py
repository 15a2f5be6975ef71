"""Sigma schedules for flow-matching models, matching diffusers' FlowMatchEulerDiscreteScheduler.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps,
velocity v = eps - x0. A schedule is a 1-D float32 tensor of num_steps + 1 strictly decreasing sigmas that
starts at (or below) 1 and ends at 0; step i moves from sigmas[i] to sigmas[i + 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000  # diffusers' training grid; SD3/FLUX transformers take timestep = 1000 * sigma


def _shift(sigma: np.ndarray | float, shift: float):
    """Static resolution shift of SD3: s' = shift * s / (1 + (shift - 1) * s)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def flux_mu(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """FLUX's dynamic-shift parameter mu for a packed latent of `image_seq_len` tokens (FluxPipeline's
    calculate_shift): linear from base_shift at base_seq_len to max_shift at max_seq_len.
    For FLUX, image_seq_len = (height // 16) * (width // 16); 1024x1024 gives 4096 -> mu = 1.15."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def flow_sigmas(num_steps: int, shift: float = 1.0, mu: float | None = None) -> torch.Tensor:
    """num_steps + 1 sigmas from 1 down to 0 (float32, computed in float64).

    mu is None (SD3 / SD3.5, shift=3.0): exactly `FlowMatchEulerDiscreteScheduler(shift=shift)
    .set_timesteps(num_steps)`: u = linspace(1, sigma_min, num_steps) with sigma_min = shift(1/1000) (the
    shifted end of the 1000-step training grid, 0.002994 for shift 3), then sigma = shift(u), then a final 0.

    mu given (FLUX, dynamic shifting): the sigmas FluxPipeline ends up with: u = linspace(1, 1/num_steps,
    num_steps), sigma = e^mu / (e^mu + (1/u - 1)), then a final 0. `shift` is ignored here, as diffusers ignores
    it when use_dynamic_shifting is on. Compute mu with `flux_mu(image_seq_len)`.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if mu is None:
        if not shift > 0:
            raise ValueError(f"shift must be > 0 (SD3/SD3.5 use 3.0), got {shift!r}")
        sigma_max = _shift(1.0, shift)
        sigma_min = _shift(1.0 / NUM_TRAIN_TIMESTEPS, shift)
        u = np.linspace(sigma_max, sigma_min, num_steps, dtype=np.float64)
        sig = _shift(u, shift)
    else:
        if not math.isfinite(mu):
            raise ValueError(f"mu must be a finite float (see samplers.flux_mu), got {mu!r}")
        u = np.linspace(1.0, 1.0 / num_steps, num_steps, dtype=np.float64)
        sig = math.exp(mu) / (math.exp(mu) + (1.0 / u - 1.0))
    sig = np.concatenate([sig, [0.0]])
    return torch.from_numpy(sig).to(torch.float32)


def check_sigmas(sigmas: torch.Tensor | Sequence[float], name: str = "sigmas") -> list[float]:
    """Validate a schedule (1-D, >= 2 values, all in [0, 1], strictly decreasing); return it as Python floats."""
    if isinstance(sigmas, torch.Tensor):
        if sigmas.ndim != 1:
            raise ValueError(f"{name} must be a 1-D tensor of num_steps + 1 values, got shape {tuple(sigmas.shape)}")
        values = sigmas.detach().to("cpu", torch.float64).tolist()
    else:
        values = [float(s) for s in sigmas]
    if len(values) < 2:
        raise ValueError(f"{name} needs at least 2 values (start and end), got {len(values)}")
    if any(not (0.0 <= s <= 1.0) for s in values):
        raise ValueError(f"{name} must lie in [0, 1] (t = 1 noise, t = 0 data), "
                         f"got min {min(values)} max {max(values)}")
    if any(b >= a for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"{name} must be strictly decreasing (from noise at 1 towards data at 0); "
                         "build one with samplers.flow_sigmas")
    return values
