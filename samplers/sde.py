"""Stochastic (SDE) steps for flow-matching models with exact Gaussian transition log-probs.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, velocity
v = eps - x0; x0_hat = x - t v, eps_hat = x + (1 - t) v. A step goes from t = sigma to s = sigma_next < t,
h = t - s > 0. Each step draws x_s ~ N(mean, std^2) elementwise with std shared by all elements of a sample.

Log-prob reduction: `log_prob` has shape [B] and is the per-element MEAN over all non-batch dims of the
log-density (the Flow-GRPO convention, which its 1e-4 clip ranges assume); reduce="sum" gives the sum.
The log-prob treats prev_sample as data (detached), so gradients flow only through `mean` (and v).

Precision: all math runs in float32 (inputs are cast); prev_sample, mean, std and log_prob are float32.

Kinds (a = noise_level):
  "flow_grpo"  Flow-GRPO's ODE->SDE conversion. sigma_t = a sqrt(t / (1 - t)) (at t = 1 the denominator uses
               1 - s, i.e. 1 - sigmas[1] on a schedule starting at 1, as Flow-GRPO does);
               mean = x - h [v + sigma_t^2 / (2t) (x + (1 - t) v)], std = sigma_t sqrt(h). Typical a: 0.7 (SD3),
               0.9 (FLUX). Full Gaussian log-density. NOTE Flow-GRPO's KL code divides by 2 sigma_t^2 = 2 std^2 / h.
  "dance"      DanceGRPO's SDE with constant diffusion eta = a: score = -(x - (1 - t) x0_hat) / t^2,
               mean = x - h v + a^2 h score / 2, std = a sqrt(h). Full Gaussian log-density including the
               normalisers (-log std - log(2 pi)/2). Typical a: 0.3.
  "cps"        Coefficients-preserving sampling: std = s sin(a pi / 2),
               mean = (1 - s) x0_hat + sqrt(s^2 - std^2) eps_hat. Its log-prob is the reference's UNNORMALISED
               form -(x_s - mean)^2 (mean or sum over elements; no variance, no constants), as paired with
               clip range 1e-5 in Flow-GRPO. Typical a: 0.8. At s = 0 the step is deterministic.
  "ddim"       DDIM with eta = a (Song et al.) written in flow coordinates (alpha_t = 1 - t, sigma_t = t):
               std = a s sqrt(1 - ((1 - t) s / ((1 - s) t))^2) (the DDPM posterior std for a = 1),
               mean = (1 - s) x0_hat + sqrt(s^2 - std^2) eps_hat. a = 1 is CTRL's / DDPO's fully stochastic
               sampler; full Gaussian log-density. At s = 0 the step is deterministic (mean = x0_hat).
With noise_level = 0 every kind returns exactly the Euler step x + (s - t) v, std 0 and log_prob 0 (no noise
is drawn). Deterministic steps get log_prob 0 by this package's convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .ode import Sigma, as_column, check_same_shape

SDE_KINDS = ("flow_grpo", "dance", "cps", "ddim")
REDUCTIONS = ("mean", "sum")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class SDEStep:
    """One stochastic step. prev_sample/mean: like x (float32); std: [B, 1, ..., 1] (broadcasts against x),
    the standard deviation of prev_sample given x; log_prob: [B] (see module docstring for the reduction)."""

    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _check_kind(kind: str) -> None:
    if kind not in SDE_KINDS:
        raise ValueError(f"kind must be one of {SDE_KINDS}, got {kind!r}")


def _check_noise_level(noise_level: float) -> float:
    a = float(noise_level)
    if not (a >= 0.0 and math.isfinite(a)):
        raise ValueError(f"noise_level must be a finite float >= 0 (0 = deterministic Euler), got {noise_level!r}")
    return a


def _reduce(elementwise: torch.Tensor, reduce: str) -> torch.Tensor:
    dims = tuple(range(1, elementwise.ndim))
    if not dims:
        return elementwise
    return elementwise.mean(dim=dims) if reduce == "mean" else elementwise.sum(dim=dims)


def sde_mean_std(
    v: torch.Tensor, x: torch.Tensor, sigma: Sigma, sigma_next: Sigma, *, kind: str = "flow_grpo",
    noise_level: float = 0.7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the step's Gaussian transition, float32; std has shape [B or 1, 1, ..., 1]."""
    _check_kind(kind)
    a = _check_noise_level(noise_level)
    check_same_shape(v, x)
    x, v = x.float(), v.float()
    t = as_column(sigma, x)
    s = as_column(sigma_next, x, "sigma_next")
    if a == 0.0:
        return x + (s - t) * v, torch.zeros_like(t)
    h = t - s
    if kind == "flow_grpo":
        denom = 1.0 - torch.where(t >= 1.0, s, t)
        sigma_t = a * torch.sqrt(t / denom)
        mean = x - h * (v + sigma_t**2 / (2 * t) * (x + (1 - t) * v))
        std = sigma_t * torch.sqrt(h)
    elif kind == "dance":
        x0 = x - t * v
        score = -(x - (1 - t) * x0) / t**2
        mean = x - h * v + 0.5 * a**2 * h * score
        std = a * torch.sqrt(h)
    elif kind == "cps":
        x0 = x - t * v
        eps = x + (1 - t) * v
        std = s * math.sin(a * math.pi / 2)
        mean = (1 - s) * x0 + torch.sqrt((s**2 - std**2).clamp_min(0.0)) * eps
    else:  # ddim
        x0 = x - t * v
        eps = x + (1 - t) * v
        ratio = (1 - t) * s / ((1 - s) * t)
        std = a * s * torch.sqrt((1 - ratio**2).clamp_min(0.0))
        mean = (1 - s) * x0 + torch.sqrt((s**2 - std**2).clamp_min(0.0)) * eps
    return mean, std


def sde_log_prob(
    prev_sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, kind: str = "flow_grpo",
    reduce: str = "mean",
) -> torch.Tensor:
    """[B] log-prob of prev_sample under the step (mean, std); see the module docstring for kinds/reduction."""
    _check_kind(kind)
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    diff2 = (prev_sample.detach().float() - mean) ** 2
    if kind == "cps":
        return -_reduce(diff2, reduce)
    deterministic = std <= 0
    safe_std = torch.where(deterministic, torch.ones_like(std), std)
    lp = -diff2 / (2 * safe_std**2) - torch.log(safe_std) - _HALF_LOG_2PI
    lp = torch.where(deterministic, torch.zeros_like(lp), lp)
    return _reduce(lp, reduce)


def sde_step(
    v: torch.Tensor,
    x: torch.Tensor,
    sigma: Sigma,
    sigma_next: Sigma,
    *,
    kind: str = "flow_grpo",
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    prev_sample: torch.Tensor | None = None,
    reduce: str = "mean",
) -> SDEStep:
    """One SDE step from sigma to sigma_next (floats, 0-d tensors or per-sample [B] tensors).

    If prev_sample is None it is drawn as mean + std * z with z = torch.randn(x.shape, generator=generator)
    (float32, on x's device; nothing is drawn when noise_level = 0); otherwise the given prev_sample is scored
    (the training-time recomputation of a rollout's log-prob). See the module docstring for the formulas.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    mean, std = sde_mean_std(v, x, sigma, sigma_next, kind=kind, noise_level=noise_level)
    if std.shape[0] != x.shape[0]:
        std = std.expand((x.shape[0],) + std.shape[1:])
    if prev_sample is None:
        if float(noise_level) == 0.0:
            prev_sample = mean
        else:
            z = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=x.device)
            prev_sample = mean + std * z
    else:
        check_same_shape(prev_sample, x, "prev_sample")
        prev_sample = prev_sample.float()
    if float(noise_level) == 0.0:
        log_prob = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
    else:
        log_prob = sde_log_prob(prev_sample, mean, std, kind=kind, reduce=reduce)
    return SDEStep(prev_sample=prev_sample, log_prob=log_prob, mean=mean, std=std)
