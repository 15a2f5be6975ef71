"""Flow-matching pretraining of the shapes-world base model on rendered data.

Convention: t = sigma in [0, 1], t = 1 noise; x_t = (1 - t) x0 + t eps; the transformer gets timestep = 1000 t
(as SD3). Prediction target (`prediction`): "x0" (default) - the transformer outputs the clean image x0_hat and the
loss is the MSE on the implied velocity v_hat = (x_t - x0_hat) / max(t, T_MIN) against v = eps - x0 (x-prediction
with a v-loss, as JiT, Li & He 2025: clean shapes lie on a low-dimensional manifold, noise does not); "v" - the
transformer regresses v directly. Recipe: timesteps t ~ logit-normal(0, 1) (SD3), AdamW with
linear warm-up and cosine decay (over the step or time budget), 10% of prompts dropped to "" (so CFG works),
text encoder trained jointly (frozen later, in RL), EMA of all weights (the EMA is what gets saved).
Images are rendered on the fly from train-split specs (genrl.shapes.prompts.PromptSampler).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch

from genrl.malloc import keep_freed_memory
from genrl.shapes.model import MAX_TOKENS, T_MIN, ShapesModelConfig, build_model, save_pipeline
from genrl.shapes.prompts import PromptSampler
from genrl.shapes.render import render_batch


@dataclass
class PretrainConfig:
    minutes: float = 45.0  # wall-clock budget (stops at whichever of minutes/cpu_minutes/steps comes first)
    cpu_minutes: float | None = None  # process CPU-time budget (what a shared machine can promise)
    steps: int = 1_000_000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 200
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.998
    prompt_dropout: float = 0.1
    seed: int = 0
    threads: int = 2
    log_every: int = 50
    save_every_minutes: float = 5.0
    bf16: bool = True  # bf16 autocast for the forward (fp32 weights, optimizer and loss); ~1.2x faster on CPU
    prediction: str = "x0"  # "x0" or "v": what the transformer outputs (stored in model_index.json)
    init_from: str | None = None  # continue from this pipeline directory's weights (fresh optimizer and EMA)


def record_progress(history: list, losses: list[float], step: int, t0: float, c0: float, lr: float, log) -> None:
    """Append the mean loss since the last record (with wall / CPU minutes and lr) to `history` and log it."""
    el, cpu = time.time() - t0, (time.process_time() - c0) / 60
    avg = sum(losses) / len(losses)
    history.append({"step": step, "loss": avg, "minutes": el / 60, "cpu_minutes": cpu, "lr": lr})
    log(f"[pretrain] step {step} loss {avg:.4f} lr {lr:.2e} {el / 60:.1f} min ({el / step:.2f} s/step, "
        f"{cpu:.1f} CPU-min)")


def lr_factor(cfg: PretrainConfig, step: int, frac: float) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def budget_fraction(cfg: PretrainConfig, step: int, t0: float, c0: float) -> float:
    """How much of the budget is used: the largest of the step, wall-clock and CPU-time fractions."""
    fracs = [step / cfg.steps, (time.time() - t0) / (cfg.minutes * 60.0)]
    if cfg.cpu_minutes:
        fracs.append((time.process_time() - c0) / (cfg.cpu_minutes * 60.0))
    return max(fracs)


def budget_spent(cfg: PretrainConfig, step: int, t0: float, c0: float) -> bool:
    return budget_fraction(cfg, step, t0, c0) >= 1.0


def load_components(path: str):
    """(transformer, text_encoder, tokenizer) of a ShapesPipeline directory."""
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, PreTrainedTokenizerFast

    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(f"--init {path} is not a shapes pipeline directory (no model_index.json)")
    return (SD3Transformer2DModel.from_pretrained(os.path.join(path, "transformer")),
            CLIPTextModelWithProjection.from_pretrained(os.path.join(path, "text_encoder")),
            PreTrainedTokenizerFast.from_pretrained(os.path.join(path, "tokenizer")))


def _config_from(transformer, text_encoder) -> dict:
    c, t = transformer.config, text_encoder.config
    return {"resolution": c.sample_size, "patch_size": c.patch_size, "num_layers": c.num_layers,
            "num_attention_heads": c.num_attention_heads, "attention_head_dim": c.attention_head_dim,
            "text_hidden": t.hidden_size, "text_layers": t.num_hidden_layers, "text_heads": t.num_attention_heads}


def pretrain(out: str, cfg: PretrainConfig | None = None, model_cfg: ShapesModelConfig | None = None,
             log=print) -> dict:
    cfg = cfg or PretrainConfig()
    if cfg.prediction not in ("x0", "v"):
        raise ValueError(f"prediction must be 'x0' or 'v', got {cfg.prediction!r}")
    model_cfg = model_cfg or ShapesModelConfig()
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # CPU pretraining: no per-step page faults (genrl/malloc.py)
    transformer, text_encoder, tokenizer = build_model(model_cfg, seed=cfg.seed)
    if cfg.init_from:
        transformer, text_encoder, tokenizer = load_components(cfg.init_from)
        with open(os.path.join(cfg.init_from, "model_index.json")) as f:
            init_pred = json.load(f).get("prediction", "v")
        if init_pred != cfg.prediction:
            raise ValueError(f"--init {cfg.init_from} predicts {init_pred!r} but this run's prediction is "
                             f"{cfg.prediction!r}; pass --prediction {init_pred}")
        model_cfg = ShapesModelConfig(**{**asdict(model_cfg), **_config_from(transformer, text_encoder)})
        transformer.train()
        text_encoder.train()
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    ema_tr, ema_te = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sampler = PromptSampler("train", seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    drop_rng = torch.Generator().manual_seed(cfg.seed + 1)
    t0, c0 = time.time(), time.process_time()
    last_save, losses, step = t0, [], 0
    history = []

    def save(tag: str):
        save_pipeline(out, ema_tr, ema_te, tokenizer, extra={
            "prediction": cfg.prediction,
            "genrl_pretrain": {**asdict(cfg), "model": asdict(model_cfg), "steps_done": step,
                               "minutes_done": round((time.time() - t0) / 60, 2),
                               "cpu_minutes_done": round((time.process_time() - c0) / 60, 2)}})
        with open(os.path.join(out, "pretrain_log.json"), "w") as f:
            json.dump(history, f)
        log(f"[pretrain] saved {tag} checkpoint (step {step}) to {out}")

    while not budget_spent(cfg, step, t0, c0):
        frac = budget_fraction(cfg, step, t0, c0)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(cfg, step, frac)
        specs = sampler.sample(cfg.batch_size)
        x0 = torch.from_numpy(render_batch(specs, model_cfg.resolution, seed=cfg.seed * 1_000_003 + step))
        drop = torch.rand(len(specs), generator=drop_rng) < cfg.prompt_dropout
        prompts = ["" if d else s["prompt"] for s, d in zip(specs, drop.tolist())]
        tok = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(len(specs), generator=gen))  # logit-normal(0, 1)
        tb = t.view(-1, 1, 1, 1)
        xt = (1 - tb) * x0 + tb * eps
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            enc = text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
            pred = transformer(hidden_states=xt, encoder_hidden_states=enc.last_hidden_state,
                               pooled_projections=enc.text_embeds, timestep=1000 * t).sample.float()
        if cfg.prediction == "x0":
            pred = (xt - pred) / tb.clamp(min=T_MIN)
        loss = (pred - (eps - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(loss.item())
        if step % cfg.log_every == 0:
            record_progress(history, losses, step, t0, c0, opt.param_groups[0]["lr"], log)
            losses = []
        if time.time() - last_save > cfg.save_every_minutes * 60:
            save("periodic")
            last_save = time.time()
    save("final")
    return {"steps": step, "minutes": (time.time() - t0) / 60}
