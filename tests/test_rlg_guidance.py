"""RL Guidance: exactness at scales 0 and 1, the 4-term CFG+RLG formula, and exact Gaussian interpolation /
extrapolation (other_methods.md §2, §5) on a toy flow policy with analytic velocities."""

import contextlib

import pytest
import torch

import samplers
from genrl.policies.base import FlowPolicy
from genrl.rlg import rlg_sample, rlg_velocity_fn, sampling_context
from genrl.rollout import velocity_fn


def gaussian_velocity(x, t, mu, s=1.0):
    """Exact rectified-flow velocity E[eps - x0 | x_t] for data N(mu, s^2): (x_t - E[x0 | x_t]) / t."""
    t = t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim else t
    x0_hat = mu + (1 - t) * s**2 / ((1 - t) ** 2 * s**2 + t**2) * (x - (1 - t) * mu)
    return (x - x0_hat) / t


class ToyPolicy(FlowPolicy):
    """Base = N(0, 1) data (+ a prompt offset), "LoRA" = N(mu_rl, 1); disable_adapter switches to the base."""

    def __init__(self, mu_rl=1.5):
        super().__init__()
        self.mu_rl = torch.nn.Parameter(torch.tensor(float(mu_rl)))
        self.enabled = True

    def encode(self, prompts):
        return {"c": torch.tensor([[0.0] if p == "" else [0.25] for p in prompts])}

    def velocity(self, x, sigma, cond):
        mu = (self.mu_rl if self.enabled else 0.0) + cond["c"].reshape(-1, 1)
        return gaussian_velocity(x, sigma, mu)

    def decode(self, x):
        return torch.sigmoid(x).reshape(-1, 1, 1, 1).expand(-1, 3, 1, 1)

    def noise_shape(self, batch, resolution=None):
        return (batch, 1)

    @contextlib.contextmanager
    def disable_adapter(self):
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True


def test_scale_0_and_1_are_bit_exact_base_and_tuned():
    pol = ToyPolicy()
    prompts = ["a", "b", "c"]
    for cfg_scale in (1.0, 3.0):
        ctx = sampling_context("cpu", 0)
        cond, uncond = pol.encode(prompts), pol.encode([""] * 3)
        noise = torch.randn(3, 1, generator=torch.Generator().manual_seed(7))
        sig = samplers.flow_sigmas(8, 3.0)
        tuned = samplers.sample(velocity_fn(pol, cond, uncond, cfg_scale, ctx), noise, sig).samples
        with pol.disable_adapter():
            base = samplers.sample(velocity_fn(pol, cond, uncond, cfg_scale, ctx), noise, sig).samples
        out0 = rlg_sample(pol, prompts, 0.0, cfg_scale, steps=8, shift=3.0, noise=noise).samples
        out1 = rlg_sample(pol, prompts, 1.0, cfg_scale, steps=8, shift=3.0, noise=noise).samples
        assert torch.equal(out0, base) and torch.equal(out1, tuned)
        assert not torch.equal(base, tuned)
    # the seed fixes the noise: same seed, same output; other seed, other output
    a = rlg_sample(pol, prompts, 1.5, seed=3).samples
    assert torch.equal(a, rlg_sample(pol, prompts, 1.5, seed=3).samples)
    assert not torch.equal(a, rlg_sample(pol, prompts, 1.5, seed=4).samples)


def test_cfg_then_rlg_equals_the_four_term_formula():
    pol = ToyPolicy()
    ctx = sampling_context()
    cond, uncond = pol.encode(["x", "y"]), pol.encode(["", ""])
    x, t, g, w = torch.tensor([[0.3], [-1.2]]), torch.tensor(0.6), 4.5, 1.7
    fn = rlg_velocity_fn(pol, cond, uncond, g, w, ctx)
    vr_c, vr_u = pol.velocity(x, t, cond), pol.velocity(x, t, uncond)
    with pol.disable_adapter():
        vb_c, vb_u = pol.velocity(x, t, cond), pol.velocity(x, t, uncond)
    vb = vb_u + g * (vb_c - vb_u)
    vr = vr_u + g * (vr_c - vr_u)
    assert torch.allclose(fn(x, t), vb + w * (vr - vb), atol=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_equal_variance_gaussians_interpolate_and_extrapolate_exactly(w):
    # base N(0,1), RL N(1.5,1): p_base^(1-w) p_rl^w = N(1.5 w, 1); RLG with exact velocities reaches it
    pol = ToyPolicy(1.5)
    n = 4000
    noise = torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    cond_free = [""] * n  # offset 0
    out = rlg_sample(pol, cond_free, w, steps=200, shift=1.0, noise=noise).samples
    assert out.mean().item() == pytest.approx(1.5 * w, abs=0.05)
    assert out.std().item() == pytest.approx(1.0, abs=0.05)


class GridToyPolicy(ToyPolicy):
    """A toy whose scheduler has its own shift (3.0), like SD3.5's."""

    device = torch.device("cpu")

    def sigmas(self, steps, shift=None, resolution=None):
        return samplers.flow_sigmas(steps, 3.0 if shift is None else shift)


def test_default_shift_is_the_models_own():
    pol = GridToyPolicy()
    out = rlg_sample(pol, ["a", "b"], rlg_scale=1.0, steps=6, seed=1)
    noise = torch.randn(2, 1, generator=torch.Generator().manual_seed(1))
    want = samplers.sample(lambda x, s: pol.velocity(x, s, pol.encode(["a", "b"])), noise,
                           samplers.flow_sigmas(6, 3.0)).samples
    torch.testing.assert_close(out.samples, want)
    from genrl.shapes.generate import generate

    imgs = generate(GridToyPolicy(), ["a", "b"], seed=1, steps=6)  # `genrl sample` path: the same grid
    torch.testing.assert_close(imgs, pol.decode(want))


def test_zero_init_steps_use_the_tuned_model_first():
    pol = ToyPolicy()
    prompts = ["a", "b"]
    tuned = rlg_sample(pol, prompts, rlg_scale=1.0, steps=6, shift=1.0, seed=2).samples
    base = rlg_sample(pol, prompts, rlg_scale=0.0, steps=6, shift=1.0, seed=2).samples
    assert torch.equal(rlg_sample(pol, prompts, rlg_scale=0.0, steps=6, shift=1.0, seed=2,
                                  zero_init_steps=6).samples, tuned)
    assert torch.equal(rlg_sample(pol, prompts, rlg_scale=0.0, steps=6, shift=1.0, seed=2,
                                  zero_init_steps=0).samples, base)
    # 2 tuned Euler steps, then 4 base steps
    cond = pol.encode(prompts)
    x = torch.randn(2, 1, generator=torch.Generator().manual_seed(2))
    sig = samplers.flow_sigmas(6, 1.0)
    for i in range(6):
        if i < 2:
            v = pol.velocity(x, sig[i], cond)
        else:
            with pol.disable_adapter():
                v = pol.velocity(x, sig[i], cond)
        x = x + (sig[i + 1] - sig[i]) * v
    got = rlg_sample(pol, prompts, rlg_scale=0.0, steps=6, shift=1.0, seed=2, zero_init_steps=2).samples
    torch.testing.assert_close(got, x)
    with pytest.raises(ValueError, match="zero_init_steps"):
        rlg_sample(pol, prompts, steps=6, zero_init_steps=7)
