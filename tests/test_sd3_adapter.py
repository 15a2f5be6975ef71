"""SD3 adapter against the real diffusers StableDiffusion3Pipeline (tiny random weights, loaded by path)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from tiny_pipelines import build_sd3, one_thread

import samplers
from genrl.lora import SD3_TARGETS
from genrl.policies import load_policy
from genrl.policies.sd3 import SD3Policy

PROMPTS = ["a red cat", "hello world"]
RES, STEPS, CFG = 32, 4, 4.5

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)  # tiny models: one torch thread


@pytest.fixture(scope="module")
def sd3_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3")
    return {"clip": build_sd3(str(root / "clip")), "t5": build_sd3(str(root / "t5"), with_t5=True)}


def _pipe(path):
    kw = {} if os.path.isdir(os.path.join(path, "text_encoder_3")) else {"text_encoder_3": None, "tokenizer_3": None}
    pipe = StableDiffusion3Pipeline.from_pretrained(path, image_encoder=None, feature_extractor=None, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _euler_cfg(policy, noise, prompts, steps=STEPS, scale=CFG):
    """Deterministic Euler sampling through the adapter with CFG (negative prompt "")."""
    cond, uncond = policy.encode(prompts), policy.encode([""] * len(prompts))
    sig = policy.sigmas(steps, resolution=RES)
    x = noise.clone()
    with torch.no_grad():
        for i in range(steps):
            v = samplers.cfg(policy.velocity(x, sig[i], uncond), policy.velocity(x, sig[i], cond), scale)
            x = x + (sig[i + 1] - sig[i]) * v
        return policy.decode(x)


def _perturb_lora(policy, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in policy.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _noise(policy, seed=0):
    return torch.randn(policy.noise_shape(len(PROMPTS), RES), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["clip", "t5"])
def test_euler_cfg_loop_matches_pipeline(sd3_dirs, variant):
    path = sd3_dirs[variant]
    policy = load_policy(path, lora_rank=4, max_sequence_length=8)
    assert isinstance(policy, SD3Policy)
    noise = _noise(policy)
    ref = _pipe(path)(PROMPTS, num_inference_steps=STEPS, height=RES, width=RES, latents=noise.clone(),
                      guidance_scale=CFG, max_sequence_length=8, output_type="pt").images
    ours = _euler_cfg(policy, noise, PROMPTS)
    assert ours.shape == (2, 3, RES, RES) and ours.min() >= 0 and ours.max() <= 1
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # the adapter's grid is the pipeline scheduler's, = samplers.flow_sigmas with shift 3
    torch.testing.assert_close(policy.sigmas(10), samplers.flow_sigmas(10, shift=3.0))
    with pytest.warns(UserWarning, match="shift 1.0 while this model.s scheduler uses 3.0"):
        torch.testing.assert_close(policy.sigmas(10, 1.0), samplers.flow_sigmas(10, shift=1.0))  # sample.shift


def test_lora_save_loads_in_diffusers_and_changes_output(sd3_dirs, tmp_path):
    path = sd3_dirs["clip"]
    policy = load_policy(path, lora_rank=4, lora_alpha=8, max_sequence_length=8)
    noise = _noise(policy)
    base = _euler_cfg(policy, noise, PROMPTS)
    _perturb_lora(policy)
    tuned = _euler_cfg(policy, noise, PROMPTS)
    assert (tuned - base).abs().max() > 1e-3
    with policy.disable_adapter():  # reference model = base weights
        torch.testing.assert_close(_euler_cfg(policy, noise, PROMPTS), base)

    policy.save_trainable(str(tmp_path / "lora"))
    assert os.path.isfile(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    assert json.load(open(tmp_path / "lora" / "genrl_trainable.json"))["rank"] == 4
    pipe = _pipe(path)
    kw = dict(num_inference_steps=STEPS, height=RES, width=RES, guidance_scale=CFG, max_sequence_length=8,
              output_type="pt")
    plain = pipe(PROMPTS, latents=noise.clone(), **kw).images
    pipe.load_lora_weights(str(tmp_path / "lora"))  # diffusers, unchanged
    with_lora = pipe(PROMPTS, latents=noise.clone(), **kw).images
    assert (with_lora - plain).abs().max() > 1e-3
    torch.testing.assert_close(with_lora, tuned, atol=1e-5, rtol=0)  # alpha/rank scale restored from metadata

    fresh = load_policy(path, lora_rank=4, lora_alpha=8, max_sequence_length=8)
    fresh.load_trainable(str(tmp_path / "lora"))
    torch.testing.assert_close(_euler_cfg(fresh, noise, PROMPTS), tuned)
    wrong = load_policy(path, lora_rank=8, max_sequence_length=8)
    with pytest.raises(ValueError, match="rank/alpha"):
        wrong.load_trainable(str(tmp_path / "lora"))


def test_trainable_parameters_and_gradients(sd3_dirs):
    policy = load_policy(sd3_dirs["clip"], lora_rank=4, max_sequence_length=8)
    params = policy.trainable_parameters()
    assert params and all(p.dtype == torch.float32 for p in params)
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in names)
    assert any(n.endswith("attn.add_q_proj.lora_A.default.weight") for n in names)
    # only the transformer is a registered submodule (what DDP/FSDP wrap)
    assert [n for n, _ in policy.named_children()] == ["transformer"]
    _perturb_lora(policy)
    x = _noise(policy)
    cond = policy.encode(PROMPTS)

    def grads(p):
        for q in params:
            q.grad = None
        policy.velocity(x, torch.tensor(0.7), cond).square().mean().backward()
        return [q.grad.clone() for q in params]

    g0 = grads(policy)
    policy.transformer.enable_gradient_checkpointing()
    policy.train()
    g1 = grads(policy)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_lora_layers_take_the_lean_forward_with_peft_results(sd3_dirs):
    """Every LoRA Linear of the adapter's transformer uses genrl.lean_lora's forward; velocity and LoRA gradients
    equal peft's own forward bit for bit (the layers swapped back)."""
    from genrl.lean_lora import LeanLoraLinear, make_lean

    policy = load_policy(sd3_dirs["clip"], lora_rank=4, max_sequence_length=8)
    _perturb_lora(policy)
    tr, x, cond, t = policy.transformer, _noise(policy), policy.encode(PROMPTS), torch.tensor(0.6)
    n = sum(type(m) is LeanLoraLinear for m in tr.modules())
    assert n == len([m for m in tr.modules() if hasattr(m, "lora_A")]) > 0

    def run():
        for q in policy.trainable_parameters():
            q.grad = None
        v = policy.velocity(x, t, cond)
        v.square().mean().backward()
        return [v.detach()] + [q.grad.clone() for q in policy.trainable_parameters()]

    lean = run()
    assert make_lean(tr, False) == n
    assert all(torch.equal(a, b) for a, b in zip(lean, run()))


def test_fast_adapter_disable_is_diffusers_disable(sd3_dirs):
    """genrl.lora.adapters_disabled (the reference forward's LoRA switch) gives the base model's output exactly as
    diffusers' disable_adapters() does, restores the adapter (also on an exception and when nested) and leaves the
    LoRA weights' requires_grad alone; module_dtype is what diffusers' model.dtype reports."""
    from genrl.lora import adapters_disabled
    from genrl.policies.diffusers_common import module_dtype

    policy = load_policy(sd3_dirs["clip"], lora_rank=4, max_sequence_length=8)
    _perturb_lora(policy)
    tr, x, cond, t = policy.transformer, _noise(policy), policy.encode(PROMPTS), torch.tensor(0.6)
    with torch.no_grad():
        tuned = policy.velocity(x, t, cond)
        tr.disable_adapters()
        base = policy.velocity(x, t, cond)
        tr.enable_adapters()
        with policy.disable_adapter():
            assert torch.equal(policy.velocity(x, t, cond), base)
            with adapters_disabled(tr):
                assert torch.equal(policy.velocity(x, t, cond), base)
            assert torch.equal(policy.velocity(x, t, cond), base)  # the inner exit keeps the outer's state
        assert torch.equal(policy.velocity(x, t, cond), tuned)
        with pytest.raises(RuntimeError, match="boom"), adapters_disabled(tr):
            raise RuntimeError("boom")
        assert torch.equal(policy.velocity(x, t, cond), tuned)
    frozen = policy.trainable_parameters()[0]
    frozen.requires_grad_(False)  # e.g. a method that trains only part of the LoRA
    with adapters_disabled(tr):
        pass
    assert not frozen.requires_grad
    with pytest.raises(ValueError, match="no LoRA adapter"):
        with adapters_disabled(load_policy(sd3_dirs["clip"], lora_rank=0, max_sequence_length=8).transformer):
            pass
    assert module_dtype(tr) == tr.dtype == torch.float32
    half = load_policy(sd3_dirs["clip"], lora_rank=4, dtype="bf16", max_sequence_length=8).transformer
    assert module_dtype(half) == half.dtype == torch.bfloat16  # the fp32 LoRA weights do not count


def test_prompt_embeddings_cached_per_unique_prompt(sd3_dirs):
    policy = load_policy(sd3_dirs["t5"], lora_rank=4, max_sequence_length=8)
    calls = []
    policy._frozen["text_encoder"].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    a = policy.encode(["x", "y", "x"])
    assert calls == [2]  # two unique prompts, one forward
    b = policy.encode(["y", "x"])
    assert calls == [2]
    torch.testing.assert_close(b["prompt_embeds"], a["prompt_embeds"][[1, 0]])
    assert a["prompt_embeds"].shape == (3, 16 + 8, 32)  # 16 CLIP tokens + 8 T5 tokens, joint dim 32
    assert a["pooled_prompt_embeds"].shape == (3, 32)


def test_full_finetune_and_bf16(sd3_dirs, tmp_path):
    policy = load_policy(sd3_dirs["clip"], lora_rank=0, max_sequence_length=8)
    assert len(policy.trainable_parameters()) == len(list(policy.transformer.parameters()))
    x, cond, t = _noise(policy), policy.encode(PROMPTS), torch.tensor(0.5)
    with torch.no_grad():
        before = policy.velocity(x, t, cond)
        for p in policy.trainable_parameters():
            p.add_(0.01)
        assert (policy.velocity(x, t, cond) - before).abs().max() > 1e-4
        with policy.disable_adapter():
            torch.testing.assert_close(policy.velocity(x, t, cond), before)
    policy.save_trainable(str(tmp_path / "full"))
    other = load_policy(sd3_dirs["clip"], lora_rank=0, max_sequence_length=8)
    other.load_trainable(str(tmp_path / "full"))
    with torch.no_grad():
        torch.testing.assert_close(other.velocity(x, t, cond), policy.velocity(x, t, cond))

    half = load_policy(sd3_dirs["clip"], lora_rank=4, dtype="bf16", max_sequence_length=8)
    assert half.transformer.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in half.trainable_parameters())
    with torch.no_grad():
        v = half.velocity(x, t, half.encode(PROMPTS))
    assert v.dtype == torch.float32 and torch.isfinite(v).all()


def test_bad_input(sd3_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_policy(str(tmp_path))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ValueError, match="'StableDiffusionPipeline' is not supported; supported: .*FluxPipeline"):
        load_policy(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="needs a 'StableDiffusion3Pipeline'"):
        SD3Policy.from_pretrained(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="rank must be an integer > 0"):
        load_policy(sd3_dirs["clip"], lora_rank=-1)
    with pytest.raises(ValueError, match=r"'attn\.to_x' not found in SD3Transformer2DModel; .*attn\.to_q"):
        load_policy(sd3_dirs["clip"], lora_targets=["attn.to_q", "attn.to_x"])
    with pytest.raises(ValueError, match="unknown SD3 option"):
        load_policy(sd3_dirs["clip"], lora_rnak=4)


@pytest.mark.parametrize("task", ["geneval", "ocr", "pickscore"])
def test_shipped_sd35_configs_build_this_adapter(sd3_dirs, task):
    from genrl.config import load_config
    from genrl.loop import load_model

    cfg = load_config(f"configs/sd35/{task}_grpo.yaml", [f"model.path={sd3_dirs['clip']}"])
    policy = load_model(cfg)
    assert isinstance(policy, SD3Policy)
    lora = policy.transformer.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.init_lora_weights) == (32, 64, "gaussian")
    assert sorted(lora.target_modules) == sorted(SD3_TARGETS)
    assert policy.max_sequence_length == 128 and cfg.sample.cfg_scale == 4.5


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="cannot fetch nobody/no-such-model/model_index.json"):
        SD3Policy.from_pretrained("nobody/no-such-model", local_files_only=True)


def test_offloaded_text_encoders_stay_put_and_encode_the_same(sd3_dirs):
    ref = load_policy(sd3_dirs["t5"], lora_rank=4, max_sequence_length=8).encode(PROMPTS)
    policy = load_policy(sd3_dirs["t5"], lora_rank=4, max_sequence_length=8, offload_text_encoders=True)
    policy.to(torch.float64)  # .to() moves/casts the transformer and VAE, not the offloaded encoders
    assert policy.transformer.dtype == torch.float64 and policy._frozen["vae"].dtype == torch.float64
    assert all(policy._frozen[k].dtype == torch.float32 for k in ("text_encoder", "text_encoder_2", "text_encoder_3"))
    out = policy.encode(PROMPTS)
    torch.testing.assert_close(out["prompt_embeds"], ref["prompt_embeds"])
    assert policy._frozen["text_encoder_3"].device.type == "cpu"
