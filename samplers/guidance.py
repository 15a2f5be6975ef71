"""Guidance as combinations of velocities (time convention: t = sigma, t = 1 noise, v = eps - x0).

Both are affine combinations with weights (1 - w, w), so they apply equally to velocity, eps or score
predictions, and compose: RLG on top of CFG is rlg(cfg(u_base, c_base, g), cfg(u_rl, c_rl, g), w)
(reference: RL Guidance, arXiv 2508.21016, both models CFG-combined with the same g first).
"""

from __future__ import annotations

import torch

from .ode import check_same_shape


def _combine(a: torch.Tensor, b: torch.Tensor, scale: float | torch.Tensor, names: tuple[str, str]) -> torch.Tensor:
    check_same_shape(b, a, f"{names[1]} (vs {names[0]})")
    # torch.lerp = a + w (b - a), computed as b - (1 - w)(b - a) for w >= 0.5: exact at w = 0 and w = 1
    if isinstance(scale, torch.Tensor):
        scale = scale.to(a.dtype)
    return torch.lerp(a, b.to(a.dtype), scale)


def cfg(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: v_uncond + scale (v_cond - v_uncond). scale 1 = conditional model, 0 = uncond."""
    return _combine(v_uncond, v_cond, scale, ("v_uncond", "v_cond"))


def rlg(v_base: torch.Tensor, v_rl: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """RL Guidance: v_base + scale (v_rl - v_base). scale 0 = base/reference model, 1 = RL model, 0<w<1
    interpolates, w > 1 extrapolates (acts like retraining with KL coefficient beta / w). Recommended 1.0-3.0."""
    return _combine(v_base, v_rl, scale, ("v_base", "v_rl"))
