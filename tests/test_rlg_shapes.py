"""RL Guidance on a real (tiny, random) shapes model: scale 0 / 1 reproduce the base / fine-tuned sampler bit for bit,
RUN_DIR_OR_LORA resolution, and `genrl rlg-sweep` writing its table and plot."""

import os

import pytest
import torch
from test_nft_run import build_tiny_shapes

import samplers
from genrl.cli import main
from genrl.policies import load_policy
from genrl.rlg import find_lora, load_rlg_policy, rlg_sample, sampling_context
from genrl.rollout import velocity_fn


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlg")
    base = build_tiny_shapes(str(root / "base"))
    pol = load_policy(base, lora_rank=4)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.3 * torch.randn_like(p))
    # a run-directory layout: run/config.yaml + run/checkpoints/step_000002/{state.pt, lora/}
    run = root / "run"
    ckpt = run / "checkpoints" / "step_000002"
    pol.save_trainable(str(ckpt / "lora"))
    (ckpt / "state.pt").write_bytes(b"")
    (run / "checkpoints" / "latest").write_text("step_000002\n")
    (run / "config.yaml").write_text("model:\n  lora_rank: 4\neval:\n  num_prompts: 4\n  steps: 6\n")
    return base, str(run), pol


def _sample(pol, prompts, noise, cfg_scale, steps=6):
    ctx = sampling_context()
    cond = pol.encode(prompts)
    uncond = pol.encode([""] * len(prompts)) if cfg_scale != 1.0 else None
    return samplers.sample(velocity_fn(pol, cond, uncond, cfg_scale, ctx), noise, samplers.flow_sigmas(steps)).samples


def test_scales_0_and_1_reproduce_base_and_finetuned_exactly(tiny):
    base, run, tuned_policy = tiny
    assert find_lora(run).endswith(os.path.join("step_000002", "lora"))
    pol = load_rlg_policy(base, run)
    plain_base = load_policy(base, lora_rank=4)  # a fresh base model (zero-initialised LoRA = the base)
    prompts = ["a red circle", "two blue squares", "a green triangle"]
    noise = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for g in (1.0, 2.5):
            out0 = rlg_sample(pol, prompts, 0.0, g, steps=6, noise=noise).samples
            out1 = rlg_sample(pol, prompts, 1.0, g, steps=6, noise=noise).samples
            assert torch.equal(out0, _sample(plain_base, prompts, noise, g))
            assert torch.equal(out1, _sample(tuned_policy, prompts, noise, g))
            mid = rlg_sample(pol, prompts, 0.5, g, steps=6, noise=noise).samples
            assert not torch.equal(mid, out0) and not torch.equal(mid, out1)


def test_find_lora_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_lora(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no LoRA weights"):
        find_lora(str(tmp_path))


def test_rlg_sweep_cli_writes_table_and_plot(tiny, tmp_path):
    base, run, _ = tiny
    out = tmp_path / "sweep"
    rc = main(["rlg-sweep", "--model", base, "--lora", run, "--scales", "0,1,2", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    table = (out / "rlg_sweep.md").read_text()
    assert "| W |" in table and "| 2 |" in table and "shapes/strict" in table
    assert (out / "rlg_sweep.png").stat().st_size > 1000 and (out / "samples_w1.png").exists()
    assert main(["rlg-sweep", "--model", base, "--lora", run, "--scales", "a,b", "--out", str(out)]) == 2


def test_genrl_sample_with_lora_and_rlg_scale(tiny, tmp_path):
    import argparse

    import numpy as np
    from PIL import Image

    from genrl.cli.sample import velocity_factory
    from genrl.shapes.generate import generate

    base, run, tuned_policy = tiny
    prompts = ["a red circle", "two blue squares"]
    pol = load_rlg_policy(base, run)
    plain = load_policy(base).eval()
    kw = dict(seed=5, steps=5, cfg_scale=3.0)
    for w, ref_policy in ((0.0, plain), (1.0, tuned_policy)):
        args = argparse.Namespace(lora=run, rlg_scale=w, cfg_scale=3.0)
        got = generate(pol, prompts, velocity_fn_factory=velocity_factory(args, pol), **kw)
        assert torch.equal(got, generate(ref_policy, prompts, **kw))
    # the CLI: --rlg-scale 0 writes the same images as the plain base model
    common = ["--model", base, "--prompt", "a red circle", "--num", "2", "--steps", "4", "--seed", "1"]
    assert main(["sample", *common, "--out", str(tmp_path / "b")]) == 0
    assert main(["sample", *common, "--lora", run, "--rlg-scale", "0", "--out", str(tmp_path / "r0")]) == 0
    assert main(["sample", *common, "--lora", run, "--rlg-scale", "2", "--out", str(tmp_path / "r2")]) == 0
    load = lambda d: np.asarray(Image.open(tmp_path / d / "sample_00.png"))  # noqa: E731
    assert np.array_equal(load("b"), load("r0")) and not np.array_equal(load("b"), load("r2"))
    assert main(["sample", *common, "--rlg-scale", "2", "--out", str(tmp_path / "x")]) == 2  # needs --lora
