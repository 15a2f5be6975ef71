"""diffu-GRPO (d1: Zhao et al. 2025, "d1: scaling reasoning in diffusion LLMs via RL"), as its trainer does it.

Masked diffusion convention: t = 1 fully masked response, t = 0 clean. Per-token log-probabilities come from
ONE forward per inner iteration in which EVERY response token is masked and each prompt token is masked
independently with probability prompt_mask_prob (0.15): log pi(o^k) ~ log p_theta(o^k | q_masked, all-mask)
(no 1/t weight, one Monte-Carlo sample). Iteration e (= the loop's pass `ctx.epoch` over the step's samples;
train.inner_epochs = d1's num_iterations) uses its own prompt mask, shared by the current, old and reference
passes; the old (rollout-time) and reference (LoRA disabled) log-probs of every iteration are computed at
rollout, as d1 does when num_iterations > 1 (with one iteration the old log-probs are the current ones,
detached).
Loss (token-level GRPO): per completion token
    -min(r A, clip(r, 1 - eps, 1 + eps) A) + beta (exp(ref - logp) - (ref - logp) - 1),   r = exp(logp - old),
averaged over all completion tokens of the micro-batch up to and including the first end-of-sequence token.
Deviation: d1 draws one mask seed per iteration for the whole batch; here each sample has its own seed per
iteration (same distribution; masks do not depend on how samples are grouped into micro-batches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrl.algorithms.base import Algorithm, register_algorithm
from genrl.masked_rollout import MaskedDLLMAlgorithm, MaskedDLLMConfig, sequences


@dataclass
class DiffuGRPOConfig(MaskedDLLMConfig):
    name: str = "diffu_grpo"
    prompt_mask_prob: float = 0.15  # d1 p_mask_prompt
    clip_range: float = 0.5  # d1 epsilon
    beta: float = 0.04  # k3 KL to the reference (LoRA disabled)


def completion_mask(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B, L] float: 1 up to and including the first end-of-sequence token (all ones if there is none)."""
    is_eos = response == eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(is_eos[:, 0], response.shape[1],
                                                                                dtype=torch.long))
    return (torch.arange(response.shape[1], device=response.device)[None] <= first[:, None]).float()


def masked_logps(policy, tokens, keys, p_len: int, seeds: torch.Tensor, prob: float) -> torch.Tensor:
    """Per-token log-probs [B, L] of the response with the response fully masked and each prompt token masked
    with probability `prob` (per-sample seeds [B])."""
    noisy = tokens.clone()
    noisy[:, p_len:] = policy.mask_id
    for i, s in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(int(s))
        hit = (torch.rand(p_len, generator=g) < prob).to(tokens.device) & keys[i, :p_len]
        noisy[i, :p_len] = torch.where(hit, torch.full_like(noisy[i, :p_len], policy.mask_id), noisy[i, :p_len])
    logp = torch.log_softmax(policy.logits(noisy, keys)[:, p_len:], dim=-1)
    return logp.gather(-1, tokens[:, p_len:, None]).squeeze(-1)


@register_algorithm("diffu_grpo")
class DiffuGRPO(MaskedDLLMAlgorithm, Algorithm):
    Config = DiffuGRPOConfig

    def rollout(self, policy, prompts, groups, ctx):
        b = super().rollout(policy, prompts, groups, ctx)
        iters = max(1, ctx.epochs)
        b.iter_seed = torch.randint(0, 2**62, (len(b), iters), generator=ctx.generator, dtype=torch.long)
        tokens, keys, p_len = sequences(policy, b)
        with torch.no_grad():
            p = self.config.prompt_mask_prob
            if iters > 1:
                b.old_logp = torch.stack([masked_logps(policy, tokens, keys, p_len, b.iter_seed[:, e], p)
                                          for e in range(iters)], 1).cpu()
            if self.config.beta != 0:
                with policy.disable_adapter():
                    b.ref_logp = torch.stack([masked_logps(policy, tokens, keys, p_len, b.iter_seed[:, e], p)
                                              for e in range(iters)], 1).cpu()
        return b

    def loss(self, policy, mb, ctx):
        c = self.config
        e = min(ctx.epoch, mb.iter_seed.shape[1] - 1)
        tokens, keys, p_len = sequences(policy, mb)
        with ctx.amp():
            logp = masked_logps(policy, tokens, keys, p_len, mb.iter_seed[:, e], c.prompt_mask_prob)
        old = mb.old_logp[:, e].to(logp.device) if mb.get("old_logp") is not None else logp.detach()
        adv = mb.advantages.to(logp.device).float()[:, None]
        ratio = torch.exp(logp - old)
        per_tok = -torch.min(ratio * adv, ratio.clamp(1 - c.clip_range, 1 + c.clip_range) * adv)
        cmask = completion_mask(mb.response.to(logp.device), policy.eos_id)
        metrics = {}
        if c.beta != 0:
            d = mb.ref_logp[:, e].to(logp.device) - logp
            kl = torch.exp(d) - d - 1
            per_tok = per_tok + c.beta * kl
            metrics["kl"] = float((kl.detach() * cmask).sum() / cmask.sum())
        loss = (per_tok * cmask).sum() / cmask.sum()
        metrics["clip_frac"] = float((((ratio - 1).abs() > c.clip_range).float() * cmask).sum() / cmask.sum())
        metrics["logp_per_token"] = float((logp.detach() * cmask).sum() / cmask.sum())
        return loss, metrics
