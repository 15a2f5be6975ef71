"""samplers.sde_step: formulas, exact Gaussian log-probs, scoring of given samples, noise_level = 0."""

import math

import pytest
import torch

import samplers

KINDS = ("flow_grpo", "dance", "cps")


def _xv(seed=0, shape=(3, 4, 5, 5), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)


@pytest.mark.parametrize("kind", ["flow_grpo", "dance"])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_log_prob_equals_torch_normal(kind, reduce):
    x, v = _xv()
    out = samplers.sde_step(v, x, 0.8, 0.6, kind=kind, noise_level=0.7, generator=torch.Generator().manual_seed(1),
                            reduce=reduce)
    ref = torch.distributions.Normal(out.mean, out.std.expand_as(out.mean)).log_prob(out.prev_sample)
    ref = ref.mean(dim=(1, 2, 3)) if reduce == "mean" else ref.sum(dim=(1, 2, 3))
    assert out.log_prob.shape == (3,)
    torch.testing.assert_close(out.log_prob, ref, rtol=1e-5, atol=1e-4)


def test_flow_grpo_formula_and_t1_handling():
    x, v = _xv()
    t, s, a = 0.9, 0.75, 0.7
    out = samplers.sde_step(v, x, t, s, noise_level=a, generator=torch.Generator().manual_seed(0))
    st = a * math.sqrt(t / (1 - t))
    h = t - s
    torch.testing.assert_close(out.mean, x - h * (v + st**2 / (2 * t) * (x + (1 - t) * v)))
    assert out.std.shape == (3, 1, 1, 1)
    torch.testing.assert_close(out.std, torch.full((3, 1, 1, 1), st * math.sqrt(h)))
    # at t = 1 Flow-GRPO replaces 1 - t by 1 - sigmas[1] (= 1 - sigma_next on the first step)
    out1 = samplers.sde_step(v, x, 1.0, 0.96, noise_level=a)
    torch.testing.assert_close(out1.std, torch.full((3, 1, 1, 1), a * math.sqrt(1 / 0.04) * math.sqrt(0.04)))
    assert torch.isfinite(out1.mean).all() and torch.isfinite(out1.log_prob).all()


def test_dance_and_cps_formulas():
    x, v = _xv()
    t, s = 0.7, 0.5
    d = samplers.sde_step(v, x, t, s, kind="dance", noise_level=0.3)
    x0 = x - t * v
    torch.testing.assert_close(d.mean, x - (t - s) * v - 0.5 * 0.09 * (t - s) * (x - (1 - t) * x0) / t**2)
    torch.testing.assert_close(d.std, torch.full((3, 1, 1, 1), 0.3 * math.sqrt(t - s)))
    c = samplers.sde_step(v, x, t, s, kind="cps", noise_level=0.8)
    std = s * math.sin(0.8 * math.pi / 2)
    torch.testing.assert_close(c.mean, (1 - s) * x0 + math.sqrt(s**2 - std**2) * (x + (1 - t) * v))
    torch.testing.assert_close(c.std, torch.full((3, 1, 1, 1), std))
    # CPS log-prob: the reference's unnormalised -(x - mean)^2, mean (default) or sum over elements
    torch.testing.assert_close(c.log_prob, -((c.prev_sample - c.mean) ** 2).mean(dim=(1, 2, 3)))
    cs = samplers.sde_step(v, x, t, s, kind="cps", noise_level=0.8, prev_sample=c.prev_sample, reduce="sum")
    torch.testing.assert_close(cs.log_prob, -((c.prev_sample - c.mean) ** 2).sum(dim=(1, 2, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_given_prev_sample_is_scored_not_redrawn(kind):
    x, v = _xv()
    drawn = samplers.sde_step(v, x, 0.6, 0.4, kind=kind, noise_level=0.7, generator=torch.Generator().manual_seed(3))
    again = samplers.sde_step(v, x, 0.6, 0.4, kind=kind, noise_level=0.7, prev_sample=drawn.prev_sample)
    assert torch.equal(again.prev_sample, drawn.prev_sample)
    assert torch.equal(again.log_prob, drawn.log_prob)  # rollout/training consistency: ratio == 1 exactly


@pytest.mark.parametrize("kind", KINDS)
def test_noise_level_zero_is_euler(kind):
    x, v = _xv()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out = samplers.sde_step(v, x, 0.6, 0.4, kind=kind, noise_level=0.0, generator=g)
    assert torch.equal(out.prev_sample, samplers.euler_step(v, x, 0.6, 0.4))
    assert torch.equal(out.log_prob, torch.zeros(3)) and torch.equal(out.std, torch.zeros(3, 1, 1, 1))
    assert torch.equal(g.get_state(), state)  # no noise drawn


@pytest.mark.parametrize("kind", KINDS)
def test_small_noise_level_tends_to_euler(kind):
    x, v = _xv()
    out = samplers.sde_step(v, x, 0.6, 0.4, kind=kind, noise_level=1e-4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.mean, samplers.euler_step(v, x, 0.6, 0.4), atol=1e-5, rtol=0)


def test_fp32_math_and_outputs_from_bf16():
    x, v = _xv(dtype=torch.bfloat16)
    out = samplers.sde_step(v, x, 0.6, 0.4, generator=torch.Generator().manual_seed(0))
    assert {out.prev_sample.dtype, out.mean.dtype, out.std.dtype, out.log_prob.dtype} == {torch.float32}
    ref = samplers.sde_step(v.float(), x.float(), 0.6, 0.4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.prev_sample, ref.prev_sample)


def test_per_sample_sigmas_match_scalar_calls():
    x, v = _xv()
    t, s = torch.tensor([0.9, 0.5, 0.3]), torch.tensor([0.8, 0.4, 0.0])
    batched = samplers.sde_step(v, x, t, s, kind="dance", noise_level=0.5, prev_sample=x * 0.9)
    for i in range(3):
        one = samplers.sde_step(v[i:i + 1], x[i:i + 1], float(t[i]), float(s[i]), kind="dance", noise_level=0.5,
                                prev_sample=x[i:i + 1] * 0.9)
        torch.testing.assert_close(batched.log_prob[i:i + 1], one.log_prob)
        torch.testing.assert_close(batched.mean[i:i + 1], one.mean)


def test_log_prob_is_differentiable_through_v():
    x, v = _xv()
    v.requires_grad_(True)
    out = samplers.sde_step(v, x, 0.6, 0.4, prev_sample=x.detach() * 0.5)
    out.log_prob.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_bad_sde_inputs():
    x, v = _xv()
    with pytest.raises(ValueError, match="kind must be one of"):
        samplers.sde_step(v, x, 0.6, 0.4, kind="ddpm")
    with pytest.raises(ValueError, match="noise_level"):
        samplers.sde_step(v, x, 0.6, 0.4, noise_level=-0.1)
    with pytest.raises(ValueError, match="shape"):
        samplers.sde_step(v[:, :2], x, 0.6, 0.4)
    with pytest.raises(ValueError, match="prev_sample"):
        samplers.sde_step(v, x, 0.6, 0.4, prev_sample=x[:1])
    with pytest.raises(ValueError, match="reduce"):
        samplers.sde_step(v, x, 0.6, 0.4, reduce="max")
    with pytest.raises(ValueError, match="sigma"):
        samplers.sde_step(v, x, torch.tensor([0.5, 0.4]), 0.3)


def test_guidance_exact_endpoints_and_composition():
    a, b = _xv()
    a = a * 1e-3  # make b - a inexact in floating point
    assert torch.equal(samplers.rlg(a, b, 0.0), a) and torch.equal(samplers.rlg(a, b, 1.0), b)
    assert torch.equal(samplers.cfg(a, b, 0.0), a) and torch.equal(samplers.cfg(a, b, 1.0), b)
    torch.testing.assert_close(samplers.rlg(a, b, 2.5), a + 2.5 * (b - a))
    torch.testing.assert_close(samplers.cfg(a, b, torch.tensor(4.5)), a + 4.5 * (b - a))
    u2, c2 = _xv(seed=7)
    both = samplers.rlg(samplers.cfg(a, b, 4.5), samplers.cfg(u2, c2, 4.5), 1.6)
    ref_base, ref_rl = a + 4.5 * (b - a), u2 + 4.5 * (c2 - u2)
    torch.testing.assert_close(both, ref_base + 1.6 * (ref_rl - ref_base))
    with pytest.raises(ValueError, match="v_rl"):
        samplers.rlg(a, b[:1], 1.0)
