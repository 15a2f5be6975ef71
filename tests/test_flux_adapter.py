"""FLUX adapter against the real diffusers FluxPipeline (tiny random CLIP + T5 + VAE + transformer, by path)."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline
from tiny_pipelines import build_flux, one_thread

import samplers
from genrl.policies import load_policy
from genrl.policies.flux import FluxPolicy

PROMPTS = ["a red cat", "hello world"]
RES, STEPS = 32, 4

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)  # tiny models: one torch thread


@pytest.fixture(scope="module")
def flux_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    return {"dev": build_flux(str(root / "dev")), "schnell": build_flux(str(root / "nog"), guidance_embeds=False)}


def _pipe(path):
    pipe = FluxPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _euler(policy, noise, prompts, steps=STEPS):
    cond = policy.encode(prompts)
    sig = policy.sigmas(steps, resolution=RES)
    x = noise.clone()
    with torch.no_grad():
        for i in range(steps):
            x = x + (sig[i + 1] - sig[i]) * policy.velocity(x, sig[i], cond)
        return policy.decode(x)


def _noise(policy, seed=0):
    return torch.randn(policy.noise_shape(len(PROMPTS), RES), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_euler_loop_matches_pipeline(flux_dirs, variant):
    path = flux_dirs[variant]
    policy = load_policy(path, max_sequence_length=8, guidance_scale=3.5)
    assert isinstance(policy, FluxPolicy)
    assert policy.noise_shape(2, RES) == (2, 64, 16)  # packed: (32/2/2)^2 tokens of 4 * 4 channels
    noise = _noise(policy)
    ref = _pipe(path)(PROMPTS, num_inference_steps=STEPS, height=RES, width=RES, latents=noise.clone(),
                      guidance_scale=3.5, max_sequence_length=8, output_type="pt").images
    torch.testing.assert_close(_euler(policy, noise, PROMPTS), ref, atol=1e-5, rtol=0)
    # dynamic shift: mu from the packed token count, = samplers.flow_sigmas(n, mu=flux_mu(seq))
    torch.testing.assert_close(policy.sigmas(6, resolution=RES), samplers.flow_sigmas(6, mu=samplers.flux_mu(64)))
    seq = policy.noise_shape(1, 128)[1]
    assert seq == 1024
    torch.testing.assert_close(policy.sigmas(28, 3.0, 128), samplers.flow_sigmas(28, mu=samplers.flux_mu(seq)))


def test_guidance_embedding_is_used(flux_dirs):
    policy = load_policy(flux_dirs["dev"], max_sequence_length=8)
    x, cond, t = _noise(policy), policy.encode(PROMPTS), torch.tensor(0.6)
    with torch.no_grad():
        a = policy.velocity(x, t, cond)
        policy.guidance_scale = 1.0
        b = policy.velocity(x, t, cond)
    assert (a - b).abs().max() > 1e-5


def test_pack_unpack_and_encode_images(flux_dirs):
    policy = load_policy(flux_dirs["dev"], max_sequence_length=8)
    x = _noise(policy)
    z = policy.unpack(x)
    assert z.shape == (2, 4, 16, 16)
    assert torch.equal(policy.pack(z), x)
    img = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))
    lat = policy.encode_images(img, generator=torch.Generator().manual_seed(0))
    assert lat.shape == x.shape and lat.dtype == torch.float32


def test_lora_targets_save_and_diffusers_load(flux_dirs, tmp_path):
    path = flux_dirs["dev"]
    policy = load_policy(path, lora_rank=4, max_sequence_length=8)
    names = [n for n, p in policy.named_parameters() if p.requires_grad]
    for t in ("attn.to_q", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"):
        assert any(f".{t}.lora_A." in n for n in names), t
    assert policy.transformer.peft_config["default"].lora_alpha == 8  # alpha defaults to 2 * rank
    noise = _noise(policy)
    base = _euler(policy, noise, PROMPTS)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in policy.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    tuned = _euler(policy, noise, PROMPTS)
    assert (tuned - base).abs().max() > 1e-3
    with policy.disable_adapter():
        torch.testing.assert_close(_euler(policy, noise, PROMPTS), base)
    policy.save_trainable(str(tmp_path / "lora"))
    pipe = _pipe(path)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    out = pipe(PROMPTS, num_inference_steps=STEPS, height=RES, width=RES, latents=noise.clone(), guidance_scale=3.5,
               max_sequence_length=8, output_type="pt").images
    torch.testing.assert_close(out, tuned, atol=1e-5, rtol=0)


def test_bad_input(flux_dirs, tmp_path):
    with pytest.raises(ValueError, match="LoRA rank must be an integer > 0"):
        load_policy(flux_dirs["dev"], lora_rank=-4)
    with pytest.raises(ValueError, match=r"'ff\.net\.9' not found in FluxTransformer2DModel; .*ff\.net\.0\.proj"):
        load_policy(flux_dirs["dev"], lora_targets=["ff.net.9"])
    with pytest.raises(ValueError, match="needs a 'FluxPipeline'"):
        FluxPolicy.from_pretrained(_sd3_like(tmp_path))
    with pytest.raises(ValueError, match="not a square grid"):
        policy = load_policy(flux_dirs["dev"], max_sequence_length=8)
        policy.velocity(torch.zeros(1, 8, 16), torch.tensor(0.5), policy.encode(["a"]))


def _sd3_like(tmp_path):
    d = tmp_path / "sd3like"
    d.mkdir()
    (d / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    return str(d)
