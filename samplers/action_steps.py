"""pi_RL's denoising steps for flow action experts (RLinf's openpi action model), as pure functions.

Time convention: t = 1 is pure noise, t = 0 is the action chunk; x_t = t eps + (1 - t) a, velocity v = eps - a.
The K-step grid is t_k = 1 - k / K (k = 0..K). One step goes from t to t - delta (delta > 0). With
x0_hat = x_t - t v (action estimate) and x1_hat = x_t + (1 - t) v (noise estimate), the next point is
Gaussian, elementwise, N(mean, std^2) with mean = (1 - (t - delta)) x0_hat + w1 x1_hat:

  ode:   w1 = t - delta,                                   std = 0          (mean = x_t - delta v)
  sde:   w1 = t - delta - sigma^2 delta / (2 t),           std = sigma sqrt(delta),
         sigma = a sqrt(t / (1 - t)), where t = 1 uses 1 - t_1 = delta in the denominator (a = noise_level)
  cps:   w1 = (t - delta) cos(pi a / 2),                   std = (t - delta) sin(pi a / 2)
  noise: the ODE mean; std given by a learnable noise network (Flow-Noise), see `bounded_std`.

Log-densities are per ELEMENT (no reduction): callers choose which elements count and how to aggregate.
Math in float32. Imports nothing from genrl or rewards.
"""

from __future__ import annotations

import math

import torch

STEP_KINDS = ("ode", "sde", "cps", "noise")


def action_grid(steps: int) -> torch.Tensor:
    """t_k = 1 - k / K for k = 0..K (float32, [K + 1], from 1 down to 0)."""
    if steps < 1:
        raise ValueError(f"denoising steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)


def step_mean_std(x: torch.Tensor, v: torch.Tensor, t: float, delta: float, kind: str, noise_level: float = 0.5,
                  std: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (broadcastable to x) of x_{t - delta} given x_t = x and velocity v (see module docstring).
    `std` is required for kind="noise" (the noise net's output) and ignored otherwise."""
    x, v = x.float(), v.float()
    x0 = x - t * v
    x1 = x + (1.0 - t) * v
    t_next = t - delta
    if kind in ("ode", "noise"):
        mean = (1.0 - t_next) * x0 + t_next * x1
        if kind == "ode":
            return mean, torch.zeros((), dtype=torch.float32, device=x.device)
        if std is None:
            raise ValueError("kind='noise' needs the noise network's std")
        return mean, std.float()
    if kind == "sde":
        denom = 1.0 - t if t < 1.0 else delta
        sigma = noise_level * math.sqrt(t / denom)
        w1 = t_next - sigma**2 * delta / (2.0 * t)
        mean = (1.0 - t_next) * x0 + w1 * x1
        return mean, torch.full((), sigma * math.sqrt(delta), dtype=torch.float32, device=x.device)
    if kind == "cps":
        a = math.pi * noise_level / 2.0
        mean = (1.0 - t_next) * x0 + t_next * math.cos(a) * x1
        return mean, torch.full((), t_next * math.sin(a), dtype=torch.float32, device=x.device)
    raise ValueError(f"unknown step kind {kind!r}; use one of {', '.join(STEP_KINDS)}")


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-element log N(x; mean, std^2) (float32, shape of x); elements with std == 0 get 0."""
    x, mean = x.float(), mean.float()
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).expand_as(x)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    lp = -torch.log(safe) - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - mean) / safe) ** 2
    return torch.where(std > 0, lp, torch.zeros_like(lp))


def gaussian_entropy(std: torch.Tensor) -> torch.Tensor:
    """Per-element entropy 0.5 log(2 pi e std^2) of N(., std^2)."""
    return 0.5 * torch.log(2 * math.pi * math.e * std.float() ** 2)


def bounded_std(z: torch.Tensor, std_min: float = 0.08, std_max: float = 0.16) -> torch.Tensor:
    """Flow-Noise std from a raw network output z: log std^2 = log s_min^2 + (log s_max^2 - log s_min^2)
    (tanh(z) + 1) / 2, so std lies in [s_min, s_max] for every z."""
    lo, hi = 2 * math.log(std_min), 2 * math.log(std_max)
    logvar = lo + (hi - lo) * (torch.tanh(z.float()) + 1.0) / 2.0
    return torch.exp(0.5 * logvar)
