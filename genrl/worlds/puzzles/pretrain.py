"""Pretraining of the puzzles-world base model with the LLaDA objective.

Masked diffusion convention: t in (0, 1], t = 1 fully masked, t = 0 clean. Each step draws, per sequence,
t ~ U(0, 1), masks every RESPONSE token independently with probability p = (1 - eps) t + eps (LLaDA's
forward_process, eps = 1e-3; the prompt is never masked) and minimises the LLaDA SFT loss
    sum over masked response tokens of CE / p, divided by (batch * response length).
Data: fresh sudoku puzzles of the TRAIN solution grids and countdown TRAIN problems, mixed `sudoku_fraction`
: (1 - sudoku_fraction); responses are padded to RESPONSE_LENGTH with [EOS] (LLaDA trains on the padding too).
Optimiser: AdamW, linear warm-up then a CONSTANT learning rate, so the model after N steps of a longer run
is exactly the model of a run with `steps=N` (the pretraining length is how the shipped model's headroom is
chosen; see docs/dllm.md). Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from genrl.malloc import keep_freed_memory
from genrl.worlds.puzzles import countdown, sudoku
from genrl.worlds.puzzles.model import PuzzlesModelConfig, build_model, build_tokenizer
from genrl.worlds.puzzles.tasks import RESPONSE_LENGTH

EPS = 1e-3


@dataclass
class DLLMPretrainConfig:
    minutes: float = 30.0  # wall-clock budget (stops at whichever of minutes/steps comes first)
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    sudoku_fraction: float = 0.75
    seed: int = 0
    threads: int = 1
    eval_every: int = 100  # held-out scores every N steps (0 = only at the end)
    snapshot_dir: str | None = None  # also save the model at every evaluation into this directory


def encode_pairs(tok, pairs: list[tuple[str, str]], response_length: int = RESPONSE_LENGTH):
    """(prompt, response) texts -> (tokens [B, P + L] with left-padded prompts, key mask [B, P + L], P)."""
    pids = [tok(p, add_special_tokens=False)["input_ids"] for p, _ in pairs]
    p_len = max(len(p) for p in pids)
    rows, keys = [], []
    for ids, (_, resp) in zip(pids, pairs):
        r = tok(resp, add_special_tokens=False)["input_ids"][:response_length]
        r = r + [tok.eos_token_id] * (response_length - len(r))
        pad = p_len - len(ids)
        rows.append([tok.pad_token_id] * pad + ids + r)
        keys.append([False] * pad + [True] * (len(ids) + response_length))
    return torch.tensor(rows), torch.tensor(keys), p_len


def logits_of(model, tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Bidirectional forward; padding excluded through a 4-D boolean mask (Gemma's 2-D path is causal)."""
    mask = None if bool(keys.all()) else keys[:, None, None, :].expand(-1, 1, keys.shape[1], -1)
    return model(input_ids=tokens, attention_mask=mask).logits


def llada_loss(model, tokens, keys, p_len: int, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    b, total = tokens.shape
    resp = torch.zeros(b, total, dtype=torch.bool)
    resp[:, p_len:] = True
    t = torch.rand(b, 1, generator=gen)
    p = (1 - EPS) * t + EPS
    masked = (torch.rand(b, total, generator=gen) < p) & resp
    noisy = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    logits = logits_of(model, noisy, keys).float()
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1),
                                           reduction="none").reshape(b, total)
    return (ce * masked / p).sum() / (b * (total - p_len))


@torch.no_grad()
def evaluate_world(model, tok, n_sudoku: int = 192, n_countdown: int = 128, batch: int = 64) -> dict:
    """Held-out scores with greedy low-confidence decoding (16 steps, one block): sudoku solve rate / cell
    accuracy, countdown solve rate."""
    import rewards
    import samplers

    model.eval()
    out = {}
    for task, n in (("sudoku", n_sudoku), ("countdown", n_countdown)):
        prompts, meta = (sudoku.puzzles("eval") if task == "sudoku" else countdown.problems("eval"))
        idx = [int(i * len(prompts) / n) for i in range(min(n, len(prompts)))]
        texts = []
        for i in range(0, len(idx), batch):
            ids = idx[i:i + batch]
            toks, keys, p_len = encode_pairs(tok, [(prompts[j], "") for j in ids])
            res = samplers.masked_diffusion_sample(
                lambda x, k=keys: logits_of(model, x, k), toks[:, :p_len], gen_length=RESPONSE_LENGTH,
                block_length=RESPONSE_LENGTH, steps=RESPONSE_LENGTH, mask_id=tok.mask_token_id)
            texts += tok.batch_decode(res.response, skip_special_tokens=True)
        m = [meta[j] for j in idx]
        scores = rewards.load(task)(texts, [prompts[j] for j in idx], m).scores
        out[f"{task}_solved"] = float(scores.mean())
        if task == "sudoku":
            part = rewards.load("sudoku", partial=True)(texts, [prompts[j] for j in idx], m)
            out["sudoku_cells"] = float(part.scores.mean())
    model.train()
    return out


def save_model(model, tok, directory: str, extra: dict | None = None) -> None:
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    if extra is not None:
        with open(os.path.join(directory, "pretrain_log.json"), "w") as f:
            json.dump(extra, f, indent=1)


def pretrain(out: str, cfg: DLLMPretrainConfig, mcfg: PuzzlesModelConfig | None = None, log=print) -> dict:
    mcfg = mcfg or PuzzlesModelConfig()
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # CPU pretraining: no per-step page faults (genrl/malloc.py)
    tok = build_tokenizer()
    model = build_model(mcfg, len(tok), tok.pad_token_id, tok.eos_token_id, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    rng = np.random.default_rng(cfg.seed)
    pyrng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, t0, c0, step = [], time.time(), time.process_time(), 0
    model.train()
    while step < cfg.steps and (time.time() - t0) < cfg.minutes * 60:
        n_s = int(rng.binomial(cfg.batch_size, cfg.sudoku_fraction))
        pairs = sudoku.pretrain_examples(n_s, rng) + countdown.pretrain_examples(cfg.batch_size - n_s, rng)
        pyrng.shuffle(pairs)
        toks, keys, p_len = encode_pairs(tok, pairs)
        loss = llada_loss(model, toks, keys, p_len, tok.mask_token_id, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 25 == 0:
            log(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / 60:.1f} min)")
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            rec = {"step": step, "minutes": (time.time() - t0) / 60, "cpu_minutes": (time.process_time() - c0) / 60,
                   "loss": float(loss.detach()),
                   **evaluate_world(model, tok)}
            history.append(rec)
            log(json.dumps(rec))
            if cfg.snapshot_dir:
                save_model(model, tok, os.path.join(cfg.snapshot_dir, f"step_{step:05d}"))
    final = history[-1] if history and history[-1]["step"] == step else \
        {"step": step, "minutes": (time.time() - t0) / 60, **evaluate_world(model, tok)}
    info = {"config": asdict(cfg), "model": asdict(mcfg), "steps": step, "minutes": (time.time() - t0) / 60,
            "cpu_minutes": (time.process_time() - c0) / 60,
            "final": final, "history": history}
    save_model(model, tok, out, info)
    return info
