"""SA-Solver: parity with an independent implementation of the paper's formulas (coefficients by numerical
quadrature, the PEC schedule written out step by step), exactness on point-mass data, and the marginals of an
analytic Gaussian flow (tau > 0 must still sample the data distribution)."""

import math

import numpy as np
import pytest
import torch

import samplers
from samplers.sa_solver import lagrange_exp_weights, sa_solver_grid


def lam(t):
    return math.log((1 - t) / t)


def quad_weights(nodes, lam_s, lam_t, c, n=400):
    """b_i = int e^{c l} L_i(l) dl by Gauss-Legendre quadrature (independent of the closed form)."""
    x, w = np.polynomial.legendre.leggauss(n)
    ls = 0.5 * (lam_t - lam_s) * x + 0.5 * (lam_t + lam_s)
    out = []
    for i, ni in enumerate(nodes):
        basis = np.ones_like(ls)
        for j, nj in enumerate(nodes):
            if j != i:
                basis *= (ls - nj) / (ni - nj)
        out.append(float(0.5 * (lam_t - lam_s) * np.sum(w * np.exp(c * ls) * basis)))
    return out


def reference_sa(vel, x, grid, tau_fn, noises):
    """Independent SA-Solver (order 2 / 2, PEC, few-step correction, last step = x0 prediction), float64."""
    def D(xx, tt):
        return xx - tt * vel(xx, tt)

    def step(x, s, t, tau, nodes, preds, z, corr, gap):
        h, c = lam(t) - lam(s), 1 + tau**2
        b = quad_weights(nodes, lam(s), lam(t), c)
        if len(nodes) == 2:
            inner = (h * c - 1 + math.exp(-c * h)) / c**2
            d = math.exp(c * lam(t)) * ((h / 2 - inner / h) if corr else (h * h / 2 - inner) / gap)
            b = [b[0] + d, b[1] - d]
        g = sum(bi * p for bi, p in zip(b, preds)) * (c * t * math.exp(-tau**2 * lam(t)))
        return (t / s) * math.exp(-tau**2 * h) * x + g + t * math.sqrt(1 - math.exp(-2 * tau**2 * h)) * z

    hist = [(grid[0], D(x, grid[0]))]
    for k in range(1, len(grid) - 1):
        s, t, z = grid[k - 1], grid[k], noises[k - 1]
        tau = tau_fn(t)
        nodes = [lam(tt) for tt, _ in hist[::-1][:2]]
        preds = [p for _, p in hist[::-1][:2]]
        gap = nodes[0] - nodes[1] if len(nodes) == 2 else None
        xp = step(x, s, t, tau, nodes, preds, z, False, gap)
        dk = D(xp, t)
        x = step(x, s, t, tau, [lam(t), nodes[0]], [dk, preds[0]], z, True, None) if k > 1 else xp
        hist = (hist + [(t, dk)])[-2:]
    return hist[-1][1]


def test_weights_match_quadrature():
    for nodes, (s, t), tau in [((lam(0.7),), (0.7, 0.5), 0.0), ((lam(0.7), lam(0.8)), (0.7, 0.55), 0.4),
                               ((lam(0.3), lam(0.2)), (0.2, 0.3), 0.4)]:
        ls, lt = lam(s), lam(t)
        got = lagrange_exp_weights([n for n in nodes], ls, lt, 1 + tau**2)
        want = quad_weights(list(nodes), ls, lt, 1 + tau**2)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_order1_tau0_is_ddim():
    s, t = 0.8, 0.5
    x, d = torch.tensor([1.3]), torch.tensor([0.2])
    from samplers.sa_solver import sa_step

    out = sa_step(x, s, t, 0.0, [lam(s)], [d], torch.zeros(1), corrector=False)
    ddim = (t / s) * x + ((1 - t) - t * (1 - s) / s) * d
    torch.testing.assert_close(out, ddim)


def test_grid_tweaks():
    g = sa_solver_grid(samplers.flow_sigmas(14, 3.0).tolist())
    ref = samplers.flow_sigmas(14, 3.0).tolist()
    assert g[0] == pytest.approx(0.999) and g[-1] == 0.0
    assert g[-2] == pytest.approx(ref[-3] / 2) and g[1:-2] == pytest.approx(ref[1:-2])


def test_sampler_matches_independent_implementation():
    torch.manual_seed(0)
    W = torch.randn(6, 6, dtype=torch.float64) * 0.3

    def vel64(x, t):  # a smooth nonlinear "model"
        return torch.tanh(x @ W) * (0.5 + t) + x

    def vel(x, sigma):
        return vel64(x.double(), float(sigma)).float()

    noise = torch.randn(5, 6)
    sig = samplers.flow_sigmas(14, 3.0)
    gen = torch.Generator().manual_seed(3)
    out = samplers.sample(vel, noise, sig, method="sa_solver", noise_level=0.4, generator=gen).samples
    # the same noise draws, in the same order (one per step that evaluates the model)
    gen = torch.Generator().manual_seed(3)
    grid = sa_solver_grid(sig.tolist())
    noises = [torch.randn(noise.shape, generator=gen).double() for _ in range(len(grid) - 2)]
    ref = reference_sa(vel64, noise.double(), grid, lambda t: 0.4 if 0.3 <= t <= 0.9 else 0.0, noises)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)


def test_point_mass_is_exact_and_ode_is_deterministic():
    x0 = torch.tensor([[0.3, -0.7, 1.1]])

    def vel(x, sigma):  # exact velocity of a point mass at x0: v = (x - x0) / t
        return (x - x0) / sigma

    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    res = samplers.sample(vel, noise, samplers.flow_sigmas(10, 3.0), method="sa_solver", noise_level=0.4,
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.samples, x0.expand(4, 3), rtol=1e-5, atol=1e-5)
    a = samplers.sample(vel, noise, samplers.flow_sigmas(10, 3.0), method="sa_solver").samples
    b = samplers.sample(vel, noise, samplers.flow_sigmas(10, 3.0), method="sa_solver").samples
    assert torch.equal(a, b)


def gaussian_velocity(mu, s):
    """Exact flow velocity for data N(mu, s^2) (per dimension): E[eps - x0 | x_t]."""
    def vel(x, sigma):
        t = float(sigma)
        var = (1 - t) ** 2 * s**2 + t**2
        x0_hat = mu + (1 - t) * s**2 * (x - (1 - t) * mu) / var
        return (x - x0_hat) / t
    return vel


@pytest.mark.parametrize("tau", [0.0, 0.4, 1.0])
def test_gaussian_marginals(tau):
    """tau > 0 injects noise but must keep sampling N(mu, s^2) (the final step returns an x0 prediction, so
    the error shrinks with the grid: 60 steps here)."""
    mu, s = 0.5, 0.4
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    out = samplers.sample(gaussian_velocity(mu, s), noise, samplers.flow_sigmas(60, 1.0), method="sa_solver",
                          noise_level=tau, generator=torch.Generator().manual_seed(1)).samples
    assert abs(out.mean().item() - mu) < 0.015
    assert abs(out.std().item() - s) < 0.015


def test_ode_error_second_order_beats_euler():
    """tau = 0: the exact ODE map of a Gaussian is x0 = mu + s eps; SA-Solver at 30 steps is much closer than Euler."""
    mu, s = 0.5, 0.4
    noise = torch.randn(256, 1, generator=torch.Generator().manual_seed(0))
    vel, exact = gaussian_velocity(mu, s), mu + s * noise
    sa = samplers.sample(vel, noise, samplers.flow_sigmas(30, 1.0), method="sa_solver").samples
    eu = samplers.sample(vel, noise, samplers.flow_sigmas(30, 1.0), method="euler").samples
    assert (sa - exact).abs().mean() < 0.6 * (eu - exact).abs().mean()


def test_bad_use():
    vel = gaussian_velocity(0.0, 1.0)
    noise = torch.randn(2, 1)
    with pytest.raises(ValueError, match="record='final'"):
        samplers.sample(vel, noise, samplers.flow_sigmas(6), method="sa_solver", record="trajectory")
    with pytest.raises(ValueError, match="noise_level"):
        samplers.sample(vel, noise, samplers.flow_sigmas(6), method="sa_solver", noise_level=-1)
