"""Flow-matching pretraining of the moving-shapes world's video model on rendered clips.

Convention: t = sigma in [0, 1], t = 1 noise; x_t = (1 - t) x0 + t eps on clips x0 [B, 3, F, H, W] in [-1, 1]; the
Wan transformer gets timestep = 1000 t. The recipe is the shapes model's (genrl/shapes/pretrain.py): x-prediction
with a v-loss (the transformer outputs x0_hat; MSE of (x_t - x0_hat) / max(t, T_MIN) against v = eps - x0, a mean
over elements), logit-normal(0, 1) timesteps, AdamW with warm-up and cosine decay over the budget, 10% of prompts
dropped to "" (CFG), the text encoder trained jointly, EMA of all weights (what gets saved). Clips are rendered on
the fly from the train split, a uniform category and then a uniform spec (genrl.worlds.motion.prompts.SpecSampler).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict

import torch

from genrl.shapes.model import T_MIN
from genrl.shapes.pretrain import PretrainConfig, budget_fraction, budget_spent, lr_factor
from genrl.worlds.motion.model import MAX_TOKENS, MotionModelConfig, build_model, save_pipeline
from genrl.worlds.motion.prompts import SpecSampler
from genrl.worlds.motion.render import render_batch


def pretrain(out: str, cfg: PretrainConfig, model_cfg: MotionModelConfig | None = None, log=print) -> dict:
    model_cfg = model_cfg or MotionModelConfig()
    torch.set_num_threads(cfg.threads)
    transformer, text_encoder, tokenizer = build_model(model_cfg, seed=cfg.seed)
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    ema_tr, ema_te = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sampler = SpecSampler("train", seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    drop_rng = torch.Generator().manual_seed(cfg.seed + 1)
    t0, c0 = time.time(), time.process_time()
    last_save, losses, step, history = t0, [], 0, []

    def save(tag: str):
        save_pipeline(out, ema_tr, ema_te, tokenizer, model_cfg, extra={
            "prediction": "x0",
            "genrl_pretrain": {**asdict(cfg), "steps_done": step, "minutes_done": round((time.time() - t0) / 60, 2),
                               "cpu_minutes_done": round((time.process_time() - c0) / 60, 2)}})
        with open(os.path.join(out, "pretrain_log.json"), "w") as f:
            json.dump(history, f)
        log(f"[pretrain] saved {tag} checkpoint (step {step}) to {out}")

    while not budget_spent(cfg, step, t0, c0):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(cfg, step, budget_fraction(cfg, step, t0, c0))
        specs = sampler.sample(cfg.batch_size)
        x0 = torch.from_numpy(render_batch(specs, model_cfg.resolution, model_cfg.frames,
                                           seed=cfg.seed * 1_000_003 + step))
        drop = torch.rand(len(specs), generator=drop_rng) < cfg.prompt_dropout
        prompts = ["" if d else s["prompt"] for s, d in zip(specs, drop.tolist())]
        tok = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
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
            el, cpu = time.time() - t0, (time.process_time() - c0) / 60
            avg = sum(losses) / len(losses)
            history.append({"step": step, "loss": avg, "minutes": el / 60, "cpu_minutes": cpu,
                            "lr": opt.param_groups[0]["lr"]})
            log(f"[pretrain] step {step} loss {avg:.4f} lr {opt.param_groups[0]['lr']:.2e} {el / 60:.1f} min "
                f"({el / step:.2f} s/step, {cpu:.1f} CPU-min)")
            losses = []
        if time.time() - last_save > cfg.save_every_minutes * 60:
            save("periodic")
            last_save = time.time()
    save("final")
    return {"steps": step, "minutes": (time.time() - t0) / 60, "cpu_minutes": (time.process_time() - c0) / 60}
