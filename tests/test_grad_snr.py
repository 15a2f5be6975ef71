"""benchmarks/grad_snr.py's estimator: the pooled per-image SNR recovers a known signal and reads ~0 on pure noise."""

import importlib.util
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stats():
    spec = importlib.util.spec_from_file_location("grad_snr", os.path.join(ROOT, "benchmarks", "grad_snr.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.snr_stats


def test_snr_recovers_a_known_signal_within_its_standard_error():
    snr_stats = _stats()
    gen = torch.Generator().manual_seed(0)
    mu = 0.1 * torch.randn(400, generator=gen)  # ||mu||^2 / (per-image noise trace 400) ~ 0.01
    true = float(mu.pow(2).sum()) / 400
    st = snr_stats([mu + torch.randn(64, 400, generator=gen) for _ in range(12)])
    assert abs(st["snr_image"] - true) < 3 * st["snr_image_se"] + 1e-4
    assert 0.9 < st["noise"] / 400 < 1.1
    assert abs(st["images_for_snr1"] - 1 / true) < 0.3 / true
    assert st["step_cos"] > 0.2


def test_pure_noise_reads_zero_signal_not_the_noise_floor():
    snr_stats = _stats()
    gen = torch.Generator().manual_seed(1)
    st = snr_stats([torch.randn(32, 300, generator=gen) for _ in range(8)])
    # the naive ||mean||^2 / noise would read 1/32; the cross-step estimate is unbiased around 0
    assert abs(st["snr_image"]) < 3 * st["snr_image_se"] + 1e-3
    assert abs(st["snr_image"]) < 0.01
