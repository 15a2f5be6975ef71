"""SA-Solver (Xue et al., "SA-Solver: Stochastic Adams Solver for Fast Sampling of Diffusion Models", NeurIPS 2023)
for rectified flows, in the configuration AWM's reference rollouts use: data prediction, predictor order 2,
corrector order 2, PEC mode (one model evaluation per step), the few-step coefficient correction for order 2, a
final step that returns the last x0 prediction, and stochasticity tau(t) = tau on a band of t.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.
In SA-Solver's notation alpha_t = 1 - t, sigma_t = t, lambda_t = log(alpha_t / sigma_t) (half log-SNR, increasing
as t -> 0) and the data prediction is D(x, t) = x - t v(x, t).

One step from s to t (t < s, h = lambda_t - lambda_s > 0, c = 1 + tau^2, z ~ N(0, I)):

    x_t = (t / s) e^{-tau^2 h} x_s + c t e^{-tau^2 lambda_t} sum_i b_i D_i + t sqrt(1 - e^{-2 tau^2 h}) z
    b_i = integral_{lambda_s}^{lambda_t} e^{c lambda} l_i(lambda) d lambda

where l_i is the Lagrange basis polynomial of node i over the nodes used: the predictor uses (lambda_s,
lambda_{s-1}) with the data predictions stored there; the corrector uses (lambda_t, lambda_s), where D at t is the
evaluation at the PREDICTED point (PEC). Predictor and corrector share z. With tau = 0 and one node this is DDIM:
x_t = (t / s) x_s + ((1 - t) - t (1 - s) / s) D. No per-step log-probability is defined (the corrector mixes
evaluations), so the sampler returns clean samples only: use it where an algorithm needs only final samples (AWM,
DiffusionNFT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

#: the reference's grid tweaks: the first time is pulled below 1 (lambda(1) = -inf) and the last nonzero time is
#: halved relative to its predecessor
FIRST_T = 1.0 - 1e-3

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _lam(t: float) -> float:
    return math.log((1.0 - t) / t)


def sa_solver_grid(sigmas: Sequence[float]) -> list[float]:
    """The reference's grid: t[0] = min(t[0], 1 - 1e-3) and, when the grid ends at 0, t[-2] = t[-3] / 2."""
    t = [float(s) for s in sigmas]
    if len(t) < 3:
        raise ValueError(f"SA-Solver needs at least 2 steps (3 sigmas), got {len(t)} sigmas")
    t[0] = min(t[0], FIRST_T)
    if t[-1] == 0.0:
        t[-2] = t[-3] / 2.0
    return t


def _exp_poly_integral(coeffs: list[float], c: float, lo: float, hi: float) -> float:
    """integral_lo^hi e^{c u} sum_k coeffs[k] u^k du in closed form (u is centred at the upper node: hi = 0).
    Uses int e^{cu} u^k du = e^{cu} sum_m (-1)^m k!/(k-m)! u^{k-m} / c^{m+1}."""

    def antideriv(u: float) -> float:
        total = 0.0
        for k, a in enumerate(coeffs):
            s = 0.0
            for m in range(k + 1):
                s += (-1) ** m * math.factorial(k) / math.factorial(k - m) * u ** (k - m) / c ** (m + 1)
            total += a * s
        return math.exp(c * u) * total

    return antideriv(hi) - antideriv(lo)


def lagrange_exp_weights(nodes: Sequence[float], lam_s: float, lam_t: float, c: float) -> list[float]:
    """b_i = integral_{lam_s}^{lam_t} e^{c lambda} l_i(lambda) d lambda for the Lagrange basis over `nodes`
    (1 or 2 nodes; b_i is returned already multiplied out of the e^{c lam_t} centring)."""
    if len(nodes) == 1:
        basis = [[1.0]]
    elif len(nodes) == 2:
        a, b = (n - lam_t for n in nodes)  # centred at lam_t for numerical stability
        basis = [[-b / (a - b), 1.0 / (a - b)], [-a / (b - a), 1.0 / (b - a)]]  # l_i(u) = c0 + c1 u
    else:
        raise ValueError(f"SA-Solver here supports orders 1 and 2, got {len(nodes)} nodes")
    scale = math.exp(c * lam_t)
    return [scale * _exp_poly_integral(p, c, lam_s - lam_t, 0.0) for p in basis]


def _few_step_correction(h: float, c: float, lam_t: float, corrector: bool, lam_gap: float) -> float:
    """The reference implementation's O(h^3) change to the order-2 weights (added to the newest node's weight,
    subtracted from the older one's); it keeps the convergence order and helps at few steps."""
    inner = (h * c - 1.0 + math.exp(-c * h)) / c**2
    if corrector:
        return math.exp(c * lam_t) * (h / 2.0 - inner / h)
    return math.exp(c * lam_t) * (h * h / 2.0 - inner) / lam_gap


def sa_step(x: torch.Tensor, s: float, t: float, tau: float, nodes: Sequence[float], preds: Sequence[torch.Tensor],
            noise: torch.Tensor, corrector: bool, lam_gap: float | None = None) -> torch.Tensor:
    """One SA predictor (corrector=False) or corrector step from time s to t. `nodes` are lambdas of `preds`
    (newest first). Order = len(nodes) (1 or 2); order 2 gets the few-step correction (lam_gap = lambda gap of
    the predictor's two nodes)."""
    lam_s, lam_t = _lam(s), _lam(t)
    h, c = lam_t - lam_s, 1.0 + tau * tau
    w = lagrange_exp_weights(nodes, lam_s, lam_t, c)
    if len(nodes) == 2:
        d = _few_step_correction(h, c, lam_t, corrector, lam_gap if lam_gap is not None else nodes[0] - nodes[1])
        w = [w[0] + d, w[1] - d]
    grad_scale = c * t * math.exp(-tau * tau * lam_t)
    out = (t / s) * math.exp(-tau * tau * h) * x
    for wi, di in zip(w, preds):
        out = out + (grad_scale * wi) * di
    if tau > 0:
        out = out + t * math.sqrt(-math.expm1(-2.0 * tau * tau * h)) * noise
    return out


def sa_solver_sample(velocity_fn: VelocityFn, noise: torch.Tensor, sigmas: Sequence[float], tau: float = 0.4,
                     tau_range: tuple[float, float] = (0.3, 0.9), generator: torch.Generator | None = None,
                     adjust_grid: bool = True) -> torch.Tensor:
    """Sample with SA-Solver (2-step predictor, 2-step corrector, PEC) from `noise` at sigmas[0] to sigmas[-1] = 0.

    tau(t) = tau when tau_range[0] <= t <= tau_range[1] for the step's TARGET time t, else 0 (the reference's rule);
    tau = 0 is a deterministic ODE solver. Model evaluations: one per step except the last, which returns the
    final x0 prediction. Fresh noise per step from torch.randn(..., generator=generator) in float32. Returns the
    final samples (float32)."""
    if tau < 0 or not math.isfinite(tau):
        raise ValueError(f"SA-Solver tau (sample.noise_level) must be finite and >= 0, got {tau}")
    t = sa_solver_grid(sigmas) if adjust_grid else [float(s) for s in sigmas]
    if t[-1] != 0.0:
        raise ValueError("SA-Solver integrates to t = 0: the sigma grid must end at 0")
    if not all(0.0 < v < 1.0 for v in t[:-1]):
        raise ValueError("SA-Solver needs 0 < t < 1 before the final 0 (use adjust_grid=True for a grid from 1)")
    steps = len(t) - 1
    model_dtype = noise.dtype
    x = noise.float()

    def data_pred(xx: torch.Tensor, tt: float) -> torch.Tensor:
        sig = torch.tensor(tt, dtype=torch.float32, device=xx.device)
        v = velocity_fn(xx.to(model_dtype), sig).float()
        if v.shape != xx.shape:
            raise ValueError(f"velocity_fn output has shape {tuple(v.shape)}, expected {tuple(xx.shape)}")
        return xx - tt * v

    def tau_at(tt: float) -> float:
        return tau if tau_range[0] <= tt <= tau_range[1] else 0.0

    preds, lams = [data_pred(x, t[0])], [_lam(t[0])]  # newest last
    for k in range(1, steps):
        s_k, t_k = t[k - 1], t[k]
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        tk = tau_at(t_k)
        order = min(2, k)  # predictor: as many stored nodes as available, at most 2
        node_l, node_d = lams[::-1][:order], preds[::-1][:order]
        x_p = sa_step(x, s_k, t_k, tk, node_l, node_d, z, corrector=False,
                      lam_gap=(lams[-1] - lams[-2]) if order == 2 else None)
        d_k = data_pred(x_p, t_k)
        if k > 1:  # the first corrector is skipped (as the reference does)
            x = sa_step(x, s_k, t_k, tk, [_lam(t_k), lams[-1]], [d_k, preds[-1]], z, corrector=True)
        else:
            x = x_p
        preds, lams = (preds + [d_k])[-2:], (lams + [_lam(t_k)])[-2:]
    return preds[-1]  # the final step to t = 0 returns the latest x0 prediction
