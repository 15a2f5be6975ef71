"""Masked discrete diffusion sampling for diffusion language models (LLaDA-style).

Time convention: a response of gen_length tokens starts fully masked (t = 1) and ends fully unmasked (t = 0);
the prompt is never masked. Generation is semi-autoregressive: the response is split into blocks of
block_length tokens, decoded left to right; each block gets steps / num_blocks denoising steps, and at each
step a fixed number of the block's still-masked positions is committed (LLaDA's get_num_transfer_tokens: the
block's mask count split evenly over its steps, the remainder going to the first steps). Which positions:
  "low_confidence"  the ones whose predicted token has the highest model probability (softmax of the raw logits);
  "random"          uniformly random ones.
Predictions are argmax(logits) for temperature = 0, else Gumbel-max sampling from softmax(logits / temperature)
(LLaDA's add_gumbel_noise in float64: exp(logits) / (-log u)^temperature). Committed tokens are never remasked.
Deviation from LLaDA: the mask token itself is never predicted (its logit is set to -inf), so every position
ends unmasked. No log-probs here; ELBO estimates for RL live with the algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

REMASKING = ("low_confidence", "random")


@dataclass
class MaskedDiffusionResult:
    """tokens: [B, P + gen_length] (prompt then response); unmask_order: [B, gen_length] int64, the global step
    index (0 .. steps - 1) at which each response position was unmasked."""

    tokens: torch.Tensor
    unmask_order: torch.Tensor

    @property
    def response(self) -> torch.Tensor:
        return self.tokens[:, self.tokens.shape[1] - self.unmask_order.shape[1]:]


def num_transfer_tokens(mask_count: torch.Tensor, steps: int) -> torch.Tensor:
    """[B] masked counts -> [B, steps] tokens to unmask per step (even split, remainder on the first steps)."""
    base = mask_count // steps
    rem = mask_count % steps
    idx = torch.arange(steps, device=mask_count.device)
    return base[:, None] + (idx[None, :] < rem[:, None]).long()


def _gumbel_argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    lg = logits.to(torch.float64)
    u = torch.rand(lg.shape, generator=generator, dtype=torch.float64, device=lg.device)
    return (lg.exp() / (-torch.log(u)) ** temperature).argmax(dim=-1)


@torch.no_grad()
def masked_diffusion_sample(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    prompt_ids: torch.Tensor,
    *,
    gen_length: int,
    block_length: int,
    steps: int,
    mask_id: int,
    remasking: str = "low_confidence",
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> MaskedDiffusionResult:
    """Generate gen_length tokens after prompt_ids [B, P] with logits_fn(tokens [B, L]) -> logits [B, L, V].

    gen_length must be a multiple of block_length, and steps a multiple of the number of blocks (LLaDA
    defaults: block_length 32, steps = gen_length or gen_length / 2). Random draws use `generator` (on the
    tokens' device), so a seeded generator makes sampling deterministic.
    """
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.ndim != 2 or prompt_ids.is_floating_point():
        raise ValueError("prompt_ids must be an integer tensor of shape [B, P]")
    for name, val in (("gen_length", gen_length), ("block_length", block_length), ("steps", steps)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
    if gen_length % block_length:
        raise ValueError(f"gen_length ({gen_length}) must be a multiple of block_length ({block_length})")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks gen_length / block_length "
                         f"= {num_blocks}")
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if not float(temperature) >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    temperature = float(temperature)
    steps_per_block = steps // num_blocks

    b, p = prompt_ids.shape
    device = prompt_ids.device
    x = torch.full((b, p + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :p] = prompt_ids
    order = torch.full((b, gen_length), -1, dtype=torch.long, device=device)
    step = 0
    for k in range(num_blocks):
        start, end = p + k * block_length, p + (k + 1) * block_length
        block_masked = x[:, start:end] == mask_id
        transfer = num_transfer_tokens(block_masked.sum(dim=1), steps_per_block)
        for i in range(steps_per_block):
            logits = logits_fn(x)
            if logits.ndim != 3 or logits.shape[:2] != x.shape:
                raise ValueError(f"logits_fn must return [B, L, V] with [B, L] = {tuple(x.shape)}, "
                                 f"got {tuple(logits.shape)}")
            logits = logits.clone()
            logits[..., mask_id] = -torch.inf
            pred = _gumbel_argmax(logits, temperature, generator)
            if remasking == "low_confidence":
                probs = torch.softmax(logits.to(torch.float64), dim=-1)
                conf = probs.gather(-1, pred[..., None]).squeeze(-1)
            else:
                conf = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=device)
            masked = x == mask_id
            masked[:, :start] = False  # prompt and finished blocks are fixed
            masked[:, end:] = False  # later blocks wait their turn
            conf = torch.where(masked, conf, torch.full_like(conf, -torch.inf))
            ranks = conf.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # 0 = most confident
            chosen = (ranks < transfer[:, i:i + 1]) & masked
            x = torch.where(chosen, pred, x)
            resp = chosen[:, p:]
            order = torch.where(resp, torch.full_like(order, step), order)
            step += 1
    return MaskedDiffusionResult(tokens=x, unmask_order=order)
