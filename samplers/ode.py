"""Deterministic (ODE) steps for flow-matching models: Euler, Heun, DPM-Solver++(2M).

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, velocity
v = eps - x0; data estimate x0_hat = x - t v. A step goes from sigma (= t) to sigma_next (= s < t); dt = s - t < 0.
All step math runs in float32 (inputs are cast) and steps return float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Sigma = float | torch.Tensor  # a float, a 0-d tensor, or a per-sample [B] tensor


def as_column(sigma: Sigma, x: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """sigma as a float32 tensor on x's device, shaped [B or 1, 1, ..., 1] to broadcast against x."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if s.ndim == 0:
        return s.reshape((1,) * x.ndim)
    if s.ndim != 1 or s.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name} must be a float, a 0-d tensor or a [B] tensor with B = {x.shape[0]}, "
                         f"got shape {tuple(s.shape)}")
    return s.reshape((s.shape[0],) + (1,) * (x.ndim - 1))


def check_same_shape(v: torch.Tensor, x: torch.Tensor, name: str = "v") -> None:
    if v.shape != x.shape:
        raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")


def euler_step(v: torch.Tensor, x: torch.Tensor, sigma: Sigma, sigma_next: Sigma) -> torch.Tensor:
    """x_s = x_t + (s - t) v, in float32 (the same arithmetic as FlowMatchEulerDiscreteScheduler.step)."""
    check_same_shape(v, x)
    dt = as_column(sigma_next, x, "sigma_next") - as_column(sigma, x)
    return x.float() + dt * v.float()


def heun_step(
    velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigma: Sigma,
    sigma_next: Sigma,
    v: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order step (trapezoidal predictor-corrector): x' = x + dt v(x, t);
    x_s = x + dt (v(x, t) + v(x', s)) / 2. Two velocity evaluations per step (pass `v` = v(x, t) if known).
    Also applied on the last step to s = 0: a flow model's velocity is defined at t = 0. velocity_fn receives
    the predictor in x's dtype and sigma_next as a tensor."""
    if v is None:
        v = velocity_fn(x, torch.as_tensor(sigma, device=x.device))
    x_pred = euler_step(v, x, sigma, sigma_next)
    v2 = velocity_fn(x_pred.to(x.dtype), torch.as_tensor(sigma_next, device=x.device))
    check_same_shape(v2, x, "velocity_fn output")
    dt = as_column(sigma_next, x, "sigma_next") - as_column(sigma, x)
    return x.float() + dt * (0.5 * (v.float() + v2.float()))


heun = heun_step


def _lambda(sigma: float) -> float:
    """Half log-SNR of the flow path, log(alpha / sigma) with alpha = 1 - sigma (-inf at sigma = 1, +inf at 0)."""
    if sigma >= 1.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log((1.0 - sigma) / sigma)


def dpm2_step(
    v: torch.Tensor,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    prev_x0: torch.Tensor | None = None,
    sigma_prev: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DPM-Solver++(2M) step in data-prediction (x0) form for the flow path alpha = 1 - sigma, sigma = sigma.

    Returns (x_next, x0_hat); feed x0_hat back as `prev_x0` (with `sigma_prev` = this step's sigma) next step.
    First-order (DDIM, eta = 0, which equals Euler for flows) when there is no previous x0, when stepping to
    sigma_next = 0 (the last step), or when the previous sigma was 1 (infinite log-SNR gap); second-order
    multistep otherwise, as in DiffusionNFT's "dpm2" rollout solver:
        lambda = log(alpha / sigma), h = lambda_s - lambda_t, r = (lambda_t - lambda_prev) / h,
        D = (1 + 1/(2r)) x0_hat - 1/(2r) prev_x0,
        x_s = (sigma_s / sigma_t) x - alpha_s (exp(-h) - 1) D.
    Sigmas are Python floats here (one shared schedule for the batch).
    """
    check_same_shape(v, x)
    sigma, sigma_next = float(sigma), float(sigma_next)
    x = x.float()
    x0 = x - sigma * v.float()
    alpha, alpha_next = 1.0 - sigma, 1.0 - sigma_next
    # alpha_s (1 - e^{-h}) = alpha_s - alpha_t sigma_s / sigma_t  (exact, no exp of infinite log-SNR)
    c_x = sigma_next / sigma
    c_d = alpha_next - alpha * sigma_next / sigma
    lam_prev = _lambda(sigma_prev) if sigma_prev is not None else -math.inf
    second_order = prev_x0 is not None and sigma_next > 0.0 and math.isfinite(lam_prev)
    if not second_order:
        return c_x * x + c_d * x0, x0
    check_same_shape(prev_x0, x, "prev_x0")
    lam, lam_next = _lambda(sigma), _lambda(sigma_next)
    r = (lam - lam_prev) / (lam_next - lam)
    d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0.float()
    return c_x * x + c_d * d, x0
