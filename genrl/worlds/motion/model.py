"""The moving-shapes world's text-to-video model: a real `WanPipeline` directory in pixel space.

  transformer/   diffusers WanTransformer3DModel with in/out channels 3: it denoises the clip itself
                 [B, 3, F, H, W] in [-1, 1] (patch 2 x 4 x 4: 4 x 8 x 8 = 256 tokens for 8 frames of 32 x 32)
  text_encoder/  transformers UMT5EncoderModel (Wan's text encoder class), tiny
  tokenizer/     word-level tokenizer over the world's vocabulary (offline)
  scheduler/     FlowMatchEulerDiscreteScheduler (shift 1)
  vae            null: `"genrl_pixel_space": true` tells genrl.policies.wan that samples are pixels (diffusers loads
                 the directory with WanPipeline.from_pretrained(path, vae=None, transformer_2=None))
model_index.json also records "prediction" ("x0": the transformer outputs the clean clip, as the shapes model),
"genrl_video" (height, width, num_frames) and "genrl_max_sequence_length".
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from genrl.shapes.model import build_tokenizer
from rewards.motion.world import WORDS

MAX_TOKENS = 16  # longest prompt: "a video of" + 10 words + BOS/EOS


@dataclass
class MotionModelConfig:
    resolution: int = 32
    frames: int = 8
    patch_t: int = 2
    patch_s: int = 4
    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    ffn_dim: int = 256
    text_dim: int = 64
    text_layers: int = 2


def build_model(cfg: MotionModelConfig | None = None, seed: int = 0):
    """(transformer, text_encoder, tokenizer) with seeded random weights."""
    import torch
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = cfg or MotionModelConfig()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(WORDS, MAX_TOKENS)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=cfg.text_dim // 4, num_heads=4,
        num_layers=cfg.text_layers, d_ff=2 * cfg.text_dim, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id))
    transformer = WanTransformer3DModel(
        patch_size=(cfg.patch_t, cfg.patch_s, cfg.patch_s), num_attention_heads=cfg.num_attention_heads,
        attention_head_dim=cfg.attention_head_dim, in_channels=3, out_channels=3, text_dim=cfg.text_dim,
        freq_dim=64, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, rope_max_seq_len=64)
    return transformer, text_encoder, tokenizer


def save_pipeline(directory: str, transformer, text_encoder, tokenizer, cfg: MotionModelConfig,
                  extra: dict | None = None) -> None:
    """Write the WanPipeline directory (save_pretrained layout, safetensors)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    os.makedirs(directory, exist_ok=True)
    transformer.save_pretrained(os.path.join(directory, "transformer"))
    text_encoder.save_pretrained(os.path.join(directory, "text_encoder"))
    tokenizer.save_pretrained(os.path.join(directory, "tokenizer"))
    FlowMatchEulerDiscreteScheduler(shift=1.0).save_pretrained(os.path.join(directory, "scheduler"))
    index = {
        "_class_name": "WanPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "vae": [None, None],
        "transformer_2": [None, None],
        "genrl_pixel_space": True,
        "genrl_video": {"height": cfg.resolution, "width": cfg.resolution, "num_frames": cfg.frames},
        "genrl_max_sequence_length": MAX_TOKENS,
        "genrl_model": asdict(cfg),
        **(extra or {}),
    }
    with open(os.path.join(directory, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
