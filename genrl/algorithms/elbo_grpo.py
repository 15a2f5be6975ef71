"""Naive ELBO-based GRPO for masked diffusion LMs: the memory baseline of BGPO (genrl/algorithms/bgpo.py).

Masked diffusion convention and ELBO terms as genrl/masked_rollout.py (SUMMED over response tokens). Per
response i with advantage A_i, the sequence-level ratio is approximated through ELBOs,
    rho_i = exp( mean_j ell_theta^(ij) - mean_j ell_old^(ij) ),   j = 1..mc_samples,
and the PPO-clipped objective mean_i min(rho_i A_i, clip(rho_i, 1 - clip_range, 1 + clip_range) A_i) is
maximised in ONE backward: all mc_samples graphs of the micro-batch stay alive until then (memory grows
linearly with n_t: what BGPO removes). ell_old: stopgrad(ell_theta) with on_policy=True, else stored at
rollout; the same masks as BGPO for the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrl.algorithms.base import Algorithm, register_algorithm
from genrl.masked_rollout import ELBOConfig, ELBOMethod, elbo_term, mc_masks, sequences


@dataclass
class ELBOGRPOConfig(ELBOConfig):
    name: str = "elbo_grpo"
    clip_range: float = 0.2  # PPO clip on the sequence-level ratio (inactive on-policy)


@register_algorithm("elbo_grpo")
class ELBOGRPO(ELBOMethod, Algorithm):
    Config = ELBOGRPOConfig

    def loss(self, policy, mb, ctx):
        n = self.config.mc_samples
        tokens, keys, p_len = sequences(policy, mb)
        masks, weights = mc_masks(mb.mc_seed, tokens.shape[1] - p_len, n)
        with ctx.amp():
            ells = torch.stack([elbo_term(policy, tokens, keys, p_len, masks[j], weights[j]) for j in range(n)], 1)
        elbo = ells.mean(1)
        old = elbo.detach() if self.config.on_policy else mb.old_elbo.to(elbo.device).mean(1)
        ratio = torch.exp(elbo - old)
        adv = mb.advantages.to(ratio.device).float()
        eps = self.config.clip_range
        loss = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
        return loss, {"elbo_per_token": float(elbo.detach().mean()) / (tokens.shape[1] - p_len),
                      "ratio": float(ratio.detach().mean())}
