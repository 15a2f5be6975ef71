"""samplers.sample: diffusers parity, exact Gaussian flows (ODE accuracy, SDE marginals, convergence order),
trajectories, windows, determinism and bad input."""

import math

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

import samplers

M, SD = 0.7, 0.4  # data x0 ~ N(M, SD^2) elementwise


def var_t(t):
    return (1 - t) ** 2 * SD**2 + t**2


def exact_velocity(x, sigma):
    """v*(x, t) = E[eps - x0 | x_t = x] for x0 ~ N(M, SD^2), eps ~ N(0, 1), x_t = (1-t) x0 + t eps:
    (x0, eps, x_t) are jointly Gaussian with Cov(eps, x_t) = t, Cov(x0, x_t) = (1-t) SD^2, Var(x_t) = var_t, so
    v* = (t - (1-t) SD^2) / var_t * (x - (1-t) M) - M. Its flow maps x_1 = z to x_t = (1-t) M + sqrt(var_t) z."""
    t = float(sigma)
    return (t - (1 - t) * SD**2) / var_t(t) * (x - (1 - t) * M) - M


def exact_flow(z, t):
    return (1 - t) * M + math.sqrt(var_t(t)) * z


# ---------------------------------------------------------------- diffusers parity

@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
        pos_embed_max_size=8,
    )
    path = tmp_path_factory.mktemp("sd3") / "transformer"
    model.save_pretrained(path)
    return SD3Transformer2DModel.from_pretrained(path).eval()


@torch.no_grad()
def test_euler_matches_diffusers_scheduler_loop(tiny_sd3):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    enc, pooled = torch.randn(2, 5, 16, generator=g), torch.randn(2, 16, generator=g)

    def forward(x, timestep):
        return tiny_sd3(hidden_states=x, timestep=timestep.expand(x.shape[0]), encoder_hidden_states=enc,
                        pooled_projections=pooled, return_dict=False)[0]

    sch = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sch.set_timesteps(6)
    x = noise.clone()
    for t in sch.timesteps:
        x = sch.step(forward(x, t), t, x, return_dict=False)[0]
    out = samplers.sample(lambda x, s: forward(x, s * 1000), noise, samplers.flow_sigmas(6, shift=3.0))
    torch.testing.assert_close(out.samples, x, atol=1e-5, rtol=0)


def test_dpm2_matches_diffusers_dpmsolver_multistep():
    sch = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0,
                                      algorithm_type="dpmsolver++", solver_order=2)
    sch.set_timesteps(8)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    for i, t in enumerate(sch.timesteps):
        y = sch.step(exact_velocity(y, sch.sigmas[i]), t, y).prev_sample
    out = samplers.sample(exact_velocity, x, sch.sigmas, method="dpm2")
    torch.testing.assert_close(out.samples, y, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- exact Gaussian flow

@pytest.mark.parametrize("method", ["euler", "heun", "dpm2"])
def test_ode_reaches_data_distribution(method):
    z = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    out = samplers.sample(exact_velocity, z, torch.linspace(1, 0, 41), method=method)
    err = (out.samples - exact_flow(z, 0.0)).abs().max().item()
    assert err < {"euler": 0.1, "heun": 2e-3, "dpm2": 0.03}[method]
    assert abs(out.samples.mean().item() - M) < 0.02 and abs(out.samples.std().item() - SD) < 0.02


@pytest.mark.parametrize("method", ["heun", "dpm2"])
def test_second_order_convergence(method):
    z = torch.randn(500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, target = exact_flow(z, 0.9), exact_flow(z, 0.1)  # interior interval: the order is not masked by t -> 0, 1
    errs = []
    for n in (20, 40, 80):
        out = samplers.sample(exact_velocity, x.float(), torch.linspace(0.9, 0.1, n + 1), method=method)
        errs.append((out.samples.double() - target).abs().max().item())
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(3.0 < r < 5.0 for r in ratios), (errs, ratios)


@pytest.mark.parametrize("kind,noise_level", [("flow_grpo", 0.7), ("flow_grpo", 1.2), ("dance", 0.3)])
def test_sde_preserves_marginals(kind, noise_level):
    n = 20000
    z = torch.randn(n, 1, generator=torch.Generator().manual_seed(1))
    sig = torch.linspace(1, 0, 201)
    out = samplers.sample(exact_velocity, z, sig, method=kind, noise_level=noise_level, record="trajectory",
                          generator=torch.Generator().manual_seed(2))
    for i in (50, 100, 200):  # every marginal along the way, not only the end
        t = float(sig[i])
        xs = out.latents[i]
        se_mean, se_std = math.sqrt(var_t(t) / n), math.sqrt(var_t(t) / (2 * n))
        assert abs(xs.mean().item() - (1 - t) * M) < 5 * se_mean + 2e-3, (i, xs.mean().item())
        assert abs(xs.std().item() - math.sqrt(var_t(t))) < 5 * se_std + 3e-3, (i, xs.std().item())


def test_cps_preserves_coefficients_given_exact_denoiser():
    """CPS keeps x_s = (1-s) x0 + s eps' exactly when x0_hat/eps_hat are exact per sample (point-mass data).
    With a non-degenerate data law it does NOT preserve marginals even with the exact velocity: it renoises the
    posterior means by an O(1) amount every step (std = s sin(a pi/2) does not shrink with the step), which
    shrinks the variance (N(0.7, 0.4^2) data, 10 linear steps, a = 0.8: final std ~0.27). A property of CPS."""
    n, x0 = 40000, 0.7

    def v_point(x, sigma):  # data = point mass at x0: eps_hat = (x - (1-t) x0) / t exactly
        t = float(sigma)
        return (x - (1 - t) * x0) / t - x0

    z = torch.randn(n, 1, generator=torch.Generator().manual_seed(3))
    sig = samplers.flow_sigmas(10, shift=3.0)
    out = samplers.sample(v_point, z, sig, method="cps", noise_level=0.8, record="trajectory",
                          generator=torch.Generator().manual_seed(4))
    for i in range(1, 10):
        s = float(sig[i])
        xs = out.latents[i]
        assert abs(xs.mean().item() - (1 - s) * x0) < 5 * s / math.sqrt(n) + 1e-5
        assert abs(xs.std().item() - s) < 5 * s / math.sqrt(2 * n) + 1e-5
    torch.testing.assert_close(out.samples, torch.full_like(z, x0), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- trajectories, windows, determinism

def test_trajectory_record_shapes_and_consistency():
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    sig = samplers.flow_sigmas(6, shift=3.0)
    out = samplers.sample(exact_velocity, noise, sig, method="flow_grpo", noise_level=0.7, sde_window=(1, 3),
                          record="trajectory", generator=torch.Generator().manual_seed(1))
    assert out.latents.shape == (7, 3, 2, 4, 4) and out.means.shape == (6, 3, 2, 4, 4)
    assert out.log_probs.shape == (6, 3) and out.stds.shape == (6, 3, 1, 1, 1) and out.sigmas.shape == (7,)
    assert out.sde_steps.tolist() == [False, True, True, True, False, False]
    assert torch.equal(out.latents[0], noise) and torch.equal(out.latents[-1], out.samples)
    assert (out.log_probs[~out.sde_steps] == 0).all() and (out.stds[~out.sde_steps] == 0).all()
    assert (out.stds[out.sde_steps] > 0).all()
    for j in range(6):  # re-scoring every stored transition reproduces the stored log-prob exactly
        x = out.latents[j]
        step = samplers.sde_step(exact_velocity(x, sig[j]), x, sig[j], sig[j + 1], noise_level=0.7 * out.sde_steps[j],
                                 prev_sample=out.latents[j + 1])
        assert torch.equal(step.log_prob, out.log_probs[j])
        if not out.sde_steps[j]:
            euler = samplers.euler_step(exact_velocity(x, sig[j]), x, sig[j], sig[j + 1])
            assert torch.equal(out.latents[j + 1], euler)


@pytest.mark.parametrize("kind", ["flow_grpo", "dance", "cps"])
def test_sample_noise_level_zero_equals_euler(kind):
    noise = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    sig = samplers.flow_sigmas(5, shift=3.0)
    ref = samplers.sample(exact_velocity, noise, sig).samples
    out = samplers.sample(exact_velocity, noise, sig, method=kind, noise_level=0.0, record="trajectory")
    assert torch.equal(out.samples, ref) and not out.sde_steps.any()


def test_deterministic_for_a_generator_and_fp32_state():
    noise = torch.randn(2, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    sig = samplers.flow_sigmas(5, shift=3.0)
    seen = []

    def vfn(x, sigma):
        seen.append((x.dtype, sigma.ndim, sigma.dtype))
        return exact_velocity(x, sigma)

    a = samplers.sample(vfn, noise, sig, method="dance", noise_level=0.5, generator=torch.Generator().manual_seed(5))
    b = samplers.sample(vfn, noise, sig, method="dance", noise_level=0.5, generator=torch.Generator().manual_seed(5))
    c = samplers.sample(vfn, noise, sig, method="dance", noise_level=0.5, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)
    assert a.samples.dtype == torch.float32
    assert set(seen) == {(torch.bfloat16, 0, torch.float32)}


def test_heun_uses_two_evaluations_per_step():
    calls = []
    samplers.sample(lambda x, s: calls.append(float(s)) or exact_velocity(x, s), torch.zeros(1, 2),
                    torch.tensor([1.0, 0.5, 0.0]), method="heun")
    assert calls == [1.0, 0.5, 0.5, 0.0]


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,match", [
    (dict(method="ddpm"), "method must be one of"),
    (dict(record="all"), "record must be one of"),
    (dict(method="flow_grpo", noise_level=-1.0), "noise_level"),
    (dict(method="euler", noise_level=0.7), "noise_level and sde_window"),
    (dict(method="flow_grpo", noise_level=0.7, sde_window=(3, 3)), "sde_window"),
    (dict(method="flow_grpo", noise_level=0.7, sde_window=(-1, 2)), "sde_window"),
    (dict(method="flow_grpo", noise_level=0.7, sde_window=(0, 0)), "sde_window"),
    (dict(method="flow_grpo", noise_level=0.7, sde_window="ab"), "sde_window"),
    (dict(sigmas=torch.tensor([1.0, 0.2, 0.5, 0.0])), "strictly decreasing"),
    (dict(sigmas=torch.tensor([1.5, 0.5, 0.0])), r"\[0, 1\]"),
    (dict(velocity_fn=lambda x, s: x[:, :1]), "velocity_fn output"),
])
def test_bad_sample_inputs(kwargs, match):
    args = dict(velocity_fn=exact_velocity, noise=torch.zeros(2, 3), sigmas=samplers.flow_sigmas(4, 3.0))
    args.update(kwargs)
    fn, noise, sig = args.pop("velocity_fn"), args.pop("noise"), args.pop("sigmas")
    with pytest.raises(ValueError, match=match):
        samplers.sample(fn, noise, sig, **args)
