"""The Wan adapter through the real loading path: tiny random WanPipelines (latent with a Wan VAE, and the
moving-shapes world's pixel-space layout) saved to disk and loaded with load_policy."""

import os

import pytest
import torch

from genrl.policies import load_policy
from genrl.shapes.model import build_tokenizer
from rewards.motion.world import WORDS


def _latent_pipeline(path):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tok = build_tokenizer(WORDS, 16)
    te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=16, d_kv=4, num_heads=4, num_layers=1, d_ff=32,
                                     pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.pad_token_id))
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                               out_channels=4, text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32)
    vae = AutoencoderKLWan(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.1, -0.2, 0.0, 0.3],
                           latents_std=[2.0, 1.5, 1.0, 0.5])
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    WanPipeline(tokenizer=tok, text_encoder=te, transformer=tr, vae=vae, scheduler=sched).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory):
    return _latent_pipeline(str(tmp_path_factory.mktemp("wan")))


def _policy(path, **kw):
    return load_policy(path, lora_rank=4, height=32, width=32, num_frames=9, max_sequence_length=16, device="cpu",
                       **kw)


def test_latent_wan_matches_the_pipeline_parts(latent_dir):
    from genrl.policies.wan import WanPolicy

    pol = _policy(latent_dir)
    assert isinstance(pol, WanPolicy) and not pol.pixel_space
    assert pol.noise_shape(2) == (2, 4, 3, 4, 4)  # (9 - 1) / 4 + 1 latent frames, 32 / 8 pixels
    cond = pol.encode(["a red circle moving right", "a square standing still"])
    emb = cond["prompt_embeds"]
    assert emb.shape == (2, 16, 16)
    assert emb[0, 7:].abs().sum() == 0 and emb[0, :7].abs().sum() > 0  # zero past [BOS] 5 words [EOS]
    x, t = torch.randn(pol.noise_shape(2)), torch.tensor([0.7, 0.2])
    raw = pol.transformer(hidden_states=x, timestep=t * 1000, encoder_hidden_states=emb).sample
    torch.testing.assert_close(pol.velocity(x, t, cond), raw)  # LoRA starts as the identity
    vae = pol._frozen["vae"]
    mean = torch.tensor(vae.config.latents_mean).view(1, 4, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 4, 1, 1, 1)
    ref = vae.decode(x * std + mean).sample.permute(0, 2, 1, 3, 4) / 2 + 0.5
    clips = pol.decode(x)
    assert clips.shape == (2, 9, 3, 32, 32)
    torch.testing.assert_close(clips, ref.clamp(0, 1))
    from samplers import flow_sigmas

    torch.testing.assert_close(pol.sigmas(10), flow_sigmas(10, 3.0))  # the scheduler's flow_shift
    with pytest.raises(ValueError, match="multiples of 16"):
        _policy(latent_dir, **{}).noise_shape(1, resolution=40)
    with pytest.raises(ValueError, match="num_frames 8"):
        load_policy(latent_dir, lora_rank=4, height=32, width=32, num_frames=8, device="cpu")


def test_lora_loads_into_wan_pipeline_and_merges(latent_dir, tmp_path):
    from diffusers import WanPipeline

    from genrl import lora as lora_lib

    pol = _policy(latent_dir)
    with torch.no_grad():
        for n, p in pol.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    cond = pol.encode(["a blue triangle moving left"])
    x, t = torch.randn(pol.noise_shape(1)), torch.tensor(0.5)
    v = pol.velocity(x, t, cond)
    with pol.disable_adapter():
        v_base = pol.velocity(x, t, cond)
    assert (v - v_base).abs().max() > 1e-3
    out = str(tmp_path / "lora")
    pol.save_trainable(out)
    pipe = WanPipeline.from_pretrained(latent_dir)
    pipe.load_lora_weights(out)
    ref = pipe.transformer(hidden_states=x, timestep=(t * 1000).reshape(1), encoder_hidden_states=cond["prompt_embeds"])
    torch.testing.assert_close(v, ref.sample, atol=1e-5, rtol=1e-4)
    merged = lora_lib.merged_pipeline(latent_dir, out, "WanPipeline")
    ref = merged.transformer(hidden_states=x, timestep=(t * 1000).reshape(1),
                             encoder_hidden_states=cond["prompt_embeds"])
    torch.testing.assert_close(v, ref.sample, atol=1e-5, rtol=1e-4)
    back = _policy(latent_dir)
    back.load_trainable(out)
    torch.testing.assert_close(back.velocity(x, t, cond), v)


def test_pixel_space_world_model_x0_prediction_and_gif(tmp_path):
    from genrl.worlds.motion.model import MotionModelConfig, build_model, save_pipeline

    cfg = MotionModelConfig(num_layers=1, ffn_dim=32, num_attention_heads=2, attention_head_dim=8, text_dim=16,
                            text_layers=1)
    tr, te, tok = build_model(cfg)
    save_pipeline(str(tmp_path / "m"), tr, te, tok, cfg, extra={"prediction": "x0"})
    pol = load_policy(str(tmp_path / "m"), lora_rank=2, device="cpu")
    assert pol.pixel_space and pol.world == "motion" and pol.noise_shape(3) == (3, 3, 8, 32, 32)
    cond = pol.encode(["a red circle moving right"])
    x, t = torch.randn(pol.noise_shape(1)), torch.tensor(0.25)
    x0_hat = pol.transformer(hidden_states=x, timestep=(t * 1000).reshape(1),
                             encoder_hidden_states=cond["prompt_embeds"]).sample
    torch.testing.assert_close(pol.velocity(x, t, cond), (x - x0_hat) / 0.25)
    clips = pol.decode(x.clamp(-1, 1))
    torch.testing.assert_close(clips, (x.clamp(-1, 1).permute(0, 2, 1, 3, 4) + 1) / 2)
    assert pol.metadata_for(["a red circle moving right"])[0]["spec"]["motion"] == "right"
    assert pol.metadata_for(["a photo of a cat"]) is None
    path = pol.save_samples(list(clips), ["a red circle moving right"], str(tmp_path / "s"), [0.5], title="t")
    from PIL import Image

    with Image.open(path) as im:
        assert path.endswith(".gif") and im.n_frames == 8
    assert os.path.isfile(path)
