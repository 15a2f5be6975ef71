"""RL Guidance (Jin et al., arXiv 2508.21016; reference other_methods.md §2): dial alignment at inference.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.

At each sampler step the base model (the same network with its LoRA disabled, so only one copy of the base
weights is in memory) and the fine-tuned model (LoRA enabled) are each CFG-combined with the same text guidance g
first, then RL-guided with scale w:

    v_base = cfg(v_base(x, t, "")  , v_base(x, t, c)  , g)
    v_rl   = cfg(v_rl(x, t, "")    , v_rl(x, t, c)    , g)
    v      = v_base + w (v_rl - v_base)

This samples (approximately; exactly for equal-variance Gaussians) from p_base^(1-w) p_rl^w, i.e. the KL-regularised
optimum with KL coefficient beta / w: w = 0 is the base model, w = 1 the fine-tuned model, 0 < w < 1 interpolates
and w > 1 extrapolates (the paper recommends 1.0-3.0). w = 0 and w = 1 evaluate only the needed model and give
bit-for-bit the base / fine-tuned sampler's output for the same seed.

    from genrl.rlg import load_rlg_policy, rlg_sample
    policy = load_rlg_policy("assets/shapes-base", "runs/shapes-nft")       # base + the run's LoRA
    out = rlg_sample(policy, ["a red circle"], rlg_scale=1.5, cfg_scale=1.0, steps=20, seed=0)
    out.images                                                               # [B, 3, H, W] in [0, 1]
"""

from __future__ import annotations

import glob
import os
import random
from dataclasses import dataclass

import torch

import samplers
from genrl.algorithms.base import StepContext
from genrl.rollout import policy_sigmas, velocity_fn


def rlg_velocity_fn(policy, cond: dict, uncond: dict | None, cfg_scale: float, rlg_scale: float,
                    ctx: StepContext | None = None, cfg_fn=None, zero_init_sigma: float | None = None):
    """velocity(x, sigma) = rlg(cfg(base), cfg(fine-tuned), rlg_scale); the base is `policy.disable_adapter()`.

    cfg_fn(policy, cond, uncond, cfg_scale) -> velocity(x, sigma) builds each model's CFG velocity (default: the
    rollout's, genrl.rollout.velocity_fn); pass the plain sampler's own builder to reproduce it bit for bit.
    zero_init_sigma: evaluations at sigma >= this value use the fine-tuned model alone (the reference's
    `zero_init_step`: plain RL-model steps first; see `zero_init_threshold`)."""
    w = float(rlg_scale)
    if cfg_fn is None:
        ctx = ctx or sampling_context()

        def cfg_fn(p, c, u, g):
            return velocity_fn(p, c, u, g, ctx)

    tuned = cfg_fn(policy, cond, uncond, cfg_scale)

    def base(x, sigma):
        with policy.disable_adapter():
            return cfg_fn(policy, cond, uncond, cfg_scale)(x, sigma)

    if w == 1.0:
        return tuned
    if w == 0.0 and zero_init_sigma is None:
        return base

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if zero_init_sigma is not None and float(sigma.reshape(-1)[0]) >= zero_init_sigma:
            return tuned(x, sigma)
        if w == 0.0:
            return base(x, sigma)
        return samplers.rlg(base(x, sigma), tuned(x, sigma), w)

    return fn


def zero_init_threshold(sigmas: torch.Tensor, zero_init_steps: int) -> float | None:
    """The sigma from which steps 0 .. zero_init_steps - 1 of the grid `sigmas` are plain fine-tuned-model steps
    (None for 0: RL Guidance from the first step, the reference's default)."""
    if zero_init_steps < 0 or zero_init_steps > len(sigmas) - 1:
        raise ValueError(f"zero_init_steps must be in [0, {len(sigmas) - 1}] (the number of steps), got "
                         f"{zero_init_steps}")
    return None if zero_init_steps == 0 else float(sigmas[zero_init_steps - 1])


@dataclass
class RLGOutput:
    samples: torch.Tensor  # final latents (float32)
    images: torch.Tensor  # [B, 3, H, W] in [0, 1]
    noise: torch.Tensor


def sampling_context(device: torch.device | str = "cpu", seed: int = 0) -> StepContext:
    """A StepContext for inference (no autocast; a generator seeded with `seed` on `device`)."""
    device = torch.device(device)
    return StepContext(step=0, update=0, generator=torch.Generator(device=device).manual_seed(int(seed)),
                       rng=random.Random(seed), device=device, seed=int(seed))


@torch.no_grad()
def rlg_sample(policy, prompts: list[str], rlg_scale: float = 1.0, cfg_scale: float = 1.0, steps: int = 20,
               shift: float | None = None, method: str = "euler", seed: int = 0, resolution: int | None = None,
               noise: torch.Tensor | None = None, device: torch.device | str | None = None,
               zero_init_steps: int = 0) -> RLGOutput:
    """Sample `prompts` with RL Guidance. `seed` fixes the initial noise (one randn draw for the whole batch), so
    the same seed gives the same noise at every scale. Deterministic methods only (euler | heun | dpm2).
    shift=None samples on the model's own grid (its scheduler's shift: 3.0 for SD3.5, 1.0 for the shapes world);
    the first `zero_init_steps` steps use the fine-tuned model alone."""
    if method not in samplers.ODE_METHODS:
        raise ValueError(f"RLG sampling uses a deterministic method ({', '.join(samplers.ODE_METHODS)}), got "
                         f"{method!r}")
    if not prompts:
        raise ValueError("no prompts given; pass at least one prompt")
    device = torch.device(device) if device is not None else next(policy.parameters()).device
    ctx = sampling_context(device, seed)
    cond = policy.encode(list(prompts))
    uncond = policy.encode([""] * len(prompts)) if cfg_scale != 1.0 else None
    if noise is None:
        shape = tuple(policy.noise_shape(len(prompts), resolution))
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))).to(device)
    sigmas = policy_sigmas(policy, steps, shift, resolution)
    fn = rlg_velocity_fn(policy, cond, uncond, cfg_scale, rlg_scale, ctx,
                         zero_init_sigma=zero_init_threshold(sigmas, zero_init_steps))
    res = samplers.sample(fn, noise, sigmas, method=method)
    images = policy.decode(res.samples).float().clamp(0, 1)
    return RLGOutput(samples=res.samples, images=images, noise=noise)


def find_lora(path: str) -> str:
    """The LoRA directory named by RUN_DIR_OR_LORA: a run directory (its latest checkpoint's `lora/`), a checkpoint
    directory (its `lora/`), or a directory holding the weights itself."""
    from genrl.checkpoint import latest_checkpoint

    if not os.path.exists(path):
        raise FileNotFoundError(f"--lora {path!r} does not exist; pass a run directory or a LoRA directory")
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    if glob.glob(os.path.join(path, "*.safetensors")) and not os.path.isdir(os.path.join(path, "lora")):
        return path
    if os.path.isdir(os.path.join(path, "lora")):
        return os.path.join(path, "lora")
    ckpt = latest_checkpoint(path, ("lora",)) if os.path.isdir(os.path.join(path, "checkpoints")) else None
    if ckpt is None or not os.path.isdir(os.path.join(ckpt, "lora")):
        raise FileNotFoundError(f"--lora {path!r}: no LoRA weights (*.safetensors) in it, and no checkpoint with a "
                                "lora/ folder under its checkpoints/; pass a run directory with a checkpoint")
    return os.path.join(ckpt, "lora")


def _lora_options(lora_path: str, lora_dir: str) -> dict:
    """Adapter options (lora_rank, lora_alpha, ...) the LoRA was trained with: from the run's config.yaml (a run or
    one of its checkpoints) or from the adapter's own trainable.json."""
    import json

    import yaml

    for run in (lora_path, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(lora_dir))))):
        cfg = os.path.join(run, "config.yaml")
        if os.path.isfile(cfg):
            with open(cfg) as f:
                model = (yaml.safe_load(f) or {}).get("model", {}) or {}
            opts = dict(model.get("options") or {})
            opts["lora_rank"] = model.get("lora_rank", 32)
            if model.get("lora_alpha") is not None:
                opts["lora_alpha"] = model["lora_alpha"]
            return opts
    meta = os.path.join(lora_dir, "trainable.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            m = json.load(f)
        return {k: m[k] for k in ("lora_rank", "lora_alpha", "lora_ff") if k in m}
    return {}


def load_rlg_policy(model: str, lora: str, device: torch.device | str = "cpu", **options):
    """The base model with the fine-tuned LoRA from RUN_DIR_OR_LORA loaded into its adapter (one copy of the base
    weights: the base is that adapter disabled). `options` override the adapter options found with the LoRA. A full
    fine-tune (lora_rank 0) also works where the adapter keeps a frozen reference copy (two copies in memory)."""
    from genrl.policies import load_policy

    lora_dir = find_lora(lora)
    opts = {**_lora_options(lora, lora_dir), **options}
    policy = load_policy(model, **opts)
    policy.load_trainable(lora_dir)
    return policy.to(device).eval()
