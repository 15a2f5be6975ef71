"""Tiny random SD3 and FLUX pipelines built offline from configs (no downloads), saved with save_pretrained.

Used by the SD3/FLUX adapter, export and distributed tests and by benchmarks/memory_bench.py. Tokenizers are built
from a small vocabulary: CLIP as byte-level BPE (vocab.json + merges.txt, see reference rewards.md §3.1), T5 as a
`tokenizers` Unigram model wrapped in T5TokenizerFast.
"""

from __future__ import annotations

import json
import os

import torch

CLIP_MAX_LEN = 16  # tokenizer.model_max_length: the SD3/FLUX pipelines pad CLIP prompts to this


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer(directory: str):
    """A 522-token CLIP BPE tokenizer (256 bytes, 256 bytes + </w>, a few merges, bos, eos)."""
    from transformers import CLIPTokenizer

    os.makedirs(directory, exist_ok=True)
    symbols = _bytes_to_unicode()
    merges = ["h e", "l l", "l o</w>", "he ll", "c a", "ca t</w>", "r e", "re d</w>"]
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab_list)}, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(directory, model_max_length=CLIP_MAX_LEN)
    tok.save_pretrained(directory)
    return tok


def build_t5_tokenizer(directory: str):
    """A Unigram T5 tokenizer (pad=0, eos=1, unk=2) with a handful of words plus single letters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    words = ["<pad>", "</s>", "<unk>", "▁a", "▁photo", "▁of", "▁cat", "▁dog", "▁red", "▁blue", "▁"]
    words += list("abcdefghijklmnopqrstuvwxyz0123456789")
    tk = Tokenizer(models.Unigram([(w, -float(i)) for i, w in enumerate(words)], unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tok = T5TokenizerFast(tokenizer_object=tk, extra_ids=0, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(directory)
    return tok


def _clip_text_config(vocab_size: int, hidden: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CLIP_MAX_LEN, projection_dim=projection,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1, hidden_act="gelu",
    )


def _t5_encoder(vocab_size: int, d_model: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1, num_heads=2,
                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(cfg)


def _vae(latent_channels: int = 4, shift_factor: float = 0.0609, scaling_factor: float = 1.5035):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=4, sample_size=32, shift_factor=shift_factor,
        scaling_factor=scaling_factor, use_quant_conv=False, use_post_quant_conv=False,
    )  # vae_scale_factor 2: 32 px images -> 16x16 latents


def build_sd3(directory: str, with_t5: bool = False, seed: int = 0) -> str:
    """Save a tiny StableDiffusion3Pipeline (two CLIP encoders, optional T5, tiny VAE and transformer)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tok = build_clip_tokenizer(os.path.join(directory, "_tok_clip"))
    v = len(tok)
    te1 = CLIPTextModelWithProjection(_clip_text_config(v, 16, 16))
    te2 = CLIPTextModelWithProjection(_clip_text_config(v, 16, 16))
    te3 = tok3 = None
    if with_t5:
        tok3 = build_t5_tokenizer(os.path.join(directory, "_tok_t5"))
        te3 = _t5_encoder(len(tok3), 32)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=32, out_channels=4,
        pos_embed_max_size=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(),
        text_encoder=te1, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok, text_encoder_3=te3, tokenizer_3=tok3,
    )
    pipe.save_pretrained(directory)
    return directory


def build_flux(directory: str, guidance_embeds: bool = True, seed: int = 0) -> str:
    """Save a tiny FluxPipeline (CLIP + T5 encoders, tiny VAE, tiny transformer with guidance embedding)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tok = build_clip_tokenizer(os.path.join(directory, "_tok_clip"))
    tok2 = build_t5_tokenizer(os.path.join(directory, "_tok_t5"))
    te1 = CLIPTextModel(_clip_text_config(len(tok), 16, 16))
    te2 = _t5_encoder(len(tok2), 32)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=guidance_embeds,
        axes_dims_rope=[4, 4, 8],
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_vae(16 // 4, 0.1159, 0.3611),
                        text_encoder=te1, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2)
    pipe.save_pretrained(directory)
    return directory


def one_thread():
    """Generator for a pytest fixture: torch on one thread while a module's tiny models run (thread start-up and
    sync dominate ops this small, badly so on a shared CPU), restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
