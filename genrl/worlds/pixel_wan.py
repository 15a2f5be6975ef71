"""Pixel-space `WanPipeline` models of the embedded worlds (moving-shapes video, 3D voxels): building, saving and
flow-matching pretraining.

Directory (a real WanPipeline save_pretrained layout, safetensors):
  transformer/   diffusers WanTransformer3DModel with in/out channels C: it denoises the sample itself
                 [B, C, F, H, W] in [-1, 1] (video: RGB frames; 3D: occupancy + RGB voxels with x as "frames")
  text_encoder/  transformers UMT5EncoderModel (Wan's text encoder class), tiny
  tokenizer/     word-level tokenizer over the world's vocabulary (offline)
  scheduler/     FlowMatchEulerDiscreteScheduler (shift 1)
  vae            null: `"genrl_pixel_space": true` tells genrl.policies.wan that samples need no VAE
model_index.json also records "prediction" ("x0": the transformer outputs the clean sample), "genrl_video" (height,
width, num_frames = the sample's H, W, F), "genrl_max_sequence_length" and the world's own keys.

Pretraining convention: t = sigma in [0, 1], t = 1 noise; x_t = (1 - t) x0 + t eps; the transformer gets timestep
= 1000 t. The recipe is the shapes model's (genrl/shapes/pretrain.py): x-prediction with a v-loss (MSE of
(x_t - x0_hat) / max(t, T_MIN) against v = eps - x0, a mean over elements), logit-normal(0, 1) timesteps, AdamW with
warm-up and cosine decay over the budget, 10% of prompts dropped to "" (CFG), the text encoder trained jointly, EMA
of all weights (what gets saved). Samples are generated on the fly by the world's renderer.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from genrl.malloc import keep_freed_memory
from genrl.shapes.model import T_MIN, build_tokenizer
from genrl.shapes.pretrain import PretrainConfig, budget_fraction, budget_spent, lr_factor, record_progress


@dataclass
class PixelWanConfig:
    resolution: int = 32  # H = W
    frames: int = 8  # F
    channels: int = 3
    patch_t: int = 2
    patch_s: int = 4
    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    ffn_dim: int = 256
    text_dim: int = 64
    text_layers: int = 2


def build_model(cfg: PixelWanConfig, words, max_tokens: int, seed: int = 0):
    """(transformer, text_encoder, tokenizer) with seeded random weights."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words, max_tokens)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=cfg.text_dim // 4, num_heads=4,
        num_layers=cfg.text_layers, d_ff=2 * cfg.text_dim, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id))
    transformer = WanTransformer3DModel(
        patch_size=(cfg.patch_t, cfg.patch_s, cfg.patch_s), num_attention_heads=cfg.num_attention_heads,
        attention_head_dim=cfg.attention_head_dim, in_channels=cfg.channels, out_channels=cfg.channels,
        text_dim=cfg.text_dim, freq_dim=64, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, rope_max_seq_len=64)
    return transformer, text_encoder, tokenizer


def save_pipeline(directory: str, transformer, text_encoder, tokenizer, cfg: PixelWanConfig, max_tokens: int,
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
        "genrl_max_sequence_length": max_tokens,
        "genrl_model": asdict(cfg),
        **(extra or {}),
    }
    with open(os.path.join(directory, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)


def pretrain(out: str, cfg: PretrainConfig, model_cfg: PixelWanConfig, words, max_tokens: int,
             sample_specs: Callable[[int], list[dict]], render: Callable[[list[dict], int], np.ndarray],
             index_extra: dict | None = None, log=print) -> dict:
    """Flow-matching pretraining (module docstring). `sample_specs(n)` draws n training specs (each with a "prompt");
    `render(specs, seed)` returns their samples [n, C, F, H, W] in [-1, 1]."""
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # CPU pretraining: no per-step page faults (genrl/malloc.py)
    transformer, text_encoder, tokenizer = build_model(model_cfg, words, max_tokens, seed=cfg.seed)
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    ema_tr, ema_te = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)
    drop_rng = torch.Generator().manual_seed(cfg.seed + 1)
    t0, c0 = time.time(), time.process_time()
    last_save, losses, step, history = t0, [], 0, []

    def save(tag: str):
        save_pipeline(out, ema_tr, ema_te, tokenizer, model_cfg, max_tokens, extra={
            "prediction": "x0", **(index_extra or {}),
            "genrl_pretrain": {**asdict(cfg), "steps_done": step, "minutes_done": round((time.time() - t0) / 60, 2),
                               "cpu_minutes_done": round((time.process_time() - c0) / 60, 2)}})
        with open(os.path.join(out, "pretrain_log.json"), "w") as f:
            json.dump(history, f)
        log(f"[pretrain] saved {tag} checkpoint (step {step}) to {out}")

    while not budget_spent(cfg, step, t0, c0):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(cfg, step, budget_fraction(cfg, step, t0, c0))
        specs = sample_specs(cfg.batch_size)
        x0 = torch.from_numpy(render(specs, cfg.seed * 1_000_003 + step))
        drop = torch.rand(len(specs), generator=drop_rng) < cfg.prompt_dropout
        prompts = ["" if d else s["prompt"] for s, d in zip(specs, drop.tolist())]
        tok = tokenizer(prompts, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(len(specs), generator=gen))  # logit-normal(0, 1)
        tb = t.view(-1, 1, 1, 1, 1)
        xt = (1 - tb) * x0 + tb * eps
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            emb = text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
            emb = emb * tok.attention_mask[..., None]  # zero past each prompt's length, as WanPipeline encodes
            x0_hat = transformer(hidden_states=xt, encoder_hidden_states=emb, timestep=1000 * t).sample.float()
        loss = ((xt - x0_hat) / tb.clamp(min=T_MIN) - (eps - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - min(cfg.ema_decay, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % cfg.log_every == 0:
            record_progress(history, losses, step, t0, c0, opt.param_groups[0]["lr"], log)
            losses = []
        if time.time() - last_save > cfg.save_every_minutes * 60:
            save("periodic")
            last_save = time.time()
    save("final")
    return {"steps": step, "minutes": (time.time() - t0) / 60, "cpu_minutes": (time.process_time() - c0) / 60}
