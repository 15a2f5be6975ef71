"""samplers.flow_sigmas / flux_mu against diffusers' FlowMatchEulerDiscreteScheduler and FluxPipeline."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

import samplers

SD3_CONFIG = dict(num_train_timesteps=1000, shift=3.0)  # stabilityai/stable-diffusion-3.5-medium scheduler
FLUX_CONFIG = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                   base_image_seq_len=256, max_image_seq_len=4096)  # black-forest-labs/FLUX.1-dev scheduler


@pytest.mark.parametrize("n", [1, 2, 10, 14, 28, 40])
def test_sd3_sigmas_match_diffusers(n):
    sch = FlowMatchEulerDiscreteScheduler(**SD3_CONFIG)
    sch.set_timesteps(n)
    ours = samplers.flow_sigmas(n, shift=3.0)
    assert ours.dtype == torch.float32 and ours.shape == (n + 1,)
    torch.testing.assert_close(ours, sch.sigmas, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[:-1] * 1000, sch.timesteps, atol=1e-3, rtol=0)


def test_sd3_reference_values():
    # flow_methods.md §0.1: the values the Flow-GRPO / NFT / AWM repos use for N = 10
    ref = [1.0, .9601, .9133, .8577, .7904, .7073, .6022, .4649, .2780, .0089, 0.0]
    torch.testing.assert_close(samplers.flow_sigmas(10, 3.0), torch.tensor(ref), atol=6e-5, rtol=0)


@pytest.mark.parametrize("n", [4, 28, 50])
@pytest.mark.parametrize("seq_len", [256, 1024, 4096])
def test_flux_sigmas_match_pipeline(n, seq_len):
    mu = samplers.flux_mu(seq_len)
    assert mu == pytest.approx(calculate_shift(seq_len, 256, 4096, 0.5, 1.15), abs=1e-12)
    sch = FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG)
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)  # what FluxPipeline.__call__ does
    torch.testing.assert_close(samplers.flow_sigmas(n, mu=mu), sch.sigmas, atol=1e-6, rtol=0)


def test_flux_mu_endpoints():
    assert samplers.flux_mu(256) == pytest.approx(0.5)
    assert samplers.flux_mu(4096) == pytest.approx(1.15)


def test_shift_one_is_linear_grid():
    sig = samplers.flow_sigmas(4)
    assert sig[0] == 1.0 and sig[-1] == 0.0 and bool((sig[1:] < sig[:-1]).all())


@pytest.mark.parametrize("bad", [dict(num_steps=0), dict(num_steps=2.5), dict(num_steps=3, shift=0.0),
                                 dict(num_steps=3, mu=float("nan"))])
def test_bad_schedule_args(bad):
    with pytest.raises(ValueError, match="num_steps|shift|mu"):
        samplers.flow_sigmas(**bad)


@pytest.mark.parametrize("sig", [[1.0, 0.5, 0.5, 0.0], [1.0, 0.6, 0.7, 0.0], [1.2, 0.5, 0.0], [0.5, -0.1], [1.0]])
def test_check_sigmas_rejects(sig):
    with pytest.raises(ValueError, match="sigmas"):
        samplers.check_sigmas(torch.tensor(sig))
