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
                    ctx: StepContext):
    """velocity(x, sigma) = rlg(cfg(base), cfg(fine-tuned), rlg_scale); the base is `policy.disable_adapter()`."""
    w = float(rlg_scale)
    tuned = velocity_fn(policy, cond, uncond, cfg_scale, ctx)

    def base(x, sigma):
        with policy.disable_adapter():
            return velocity_fn(policy, cond, uncond, cfg_scale, ctx)(x, sigma)

    if w == 1.0:
        return tuned
    if w == 0.0:
        return base

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return samplers.rlg(base(x, sigma), tuned(x, sigma), w)

    return fn


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
               shift: float = 1.0, method: str = "euler", seed: int = 0, resolution: int | None = None,
               noise: torch.Tensor | None = None, device: torch.device | str | None = None) -> RLGOutput:
    """Sample `prompts` with RL Guidance. `seed` fixes the initial noise (one randn draw for the whole batch), so
    the same seed gives the same noise at every scale. Deterministic methods only (euler | heun | dpm2)."""
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
    fn = rlg_velocity_fn(policy, cond, uncond, cfg_scale, rlg_scale, ctx)
    res = samplers.sample(fn, noise, sigmas, method=method)
    images = policy.decode(res.samples).float().clamp(0, 1)
    return RLGOutput(samples=res.samples, images=images, noise=noise)


def find_lora(path: str) -> str:
    """A LoRA directory from RUN_DIR_OR_LORA: a directory holding the LoRA weights itself, or a run directory (its
    newest checkpoint's weights)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--lora {path!r} does not exist; pass a run directory or a LoRA directory")
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    if glob.glob(os.path.join(path, "*.safetensors")):
        return path
    hits = sorted(glob.glob(os.path.join(path, "checkpoints", "*", "**", "*.safetensors"), recursive=True),
                  key=os.path.getmtime)
    hits = [h for h in hits if "optimizer" not in os.path.basename(h) and "algorithm" not in os.path.basename(h)]
    if not hits:
        raise FileNotFoundError(f"--lora {path!r}: no *.safetensors LoRA weights in it or in its checkpoints/")
    return os.path.dirname(hits[-1])


def load_rlg_policy(model: str, lora: str, device: torch.device | str = "cpu", **options):
    """The base model with the fine-tuned LoRA from RUN_DIR_OR_LORA loaded into its adapter (one copy of the base
    weights: the base is that adapter disabled)."""
    from genrl.policies import load_policy

    policy = load_policy(model, **options)
    policy.load_trainable(find_lora(lora))
    return policy.to(device).eval()
