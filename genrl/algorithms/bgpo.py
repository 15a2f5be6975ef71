"""BGPO (Lin et al. 2025, "Boundary-Guided Policy Optimization for memory-efficient RL of diffusion LLMs").

Masked diffusion convention: t = 1 fully masked response, t = 0 clean; ELBO terms as genrl/masked_rollout.py
(LLaDA's L / l-weighted masked-count form, stratified counts, SUMMED over response tokens).

The ELBO-based objective of a group-relative policy gradient for response i with advantage A_i is
    J_ELBO = mean_i A_i exp( mean_j x_ij ),     x_ij = ell_theta^(ij) - ell_old^(ij),  j = 1..n_t,
whose gradient needs all n_t graphs of response i at once. BGPO maximises a lower bound that is a plain sum
of terms each depending on ONE Monte-Carlo sample:
    J_BGPO = mean_i (1/n_t) sum_j g(A_i, x_ij),   g(A, x) = A (1 + x) if A >= 0  (tangent of exp at 0),
                                                 g(A, x) = A exp(x)  if A < 0   (Jensen, sign flipped).
RECONSTRUCTION: the authors' code is not public here; this bound has every published property (linear in the
MC samples -> one forward/backward per yielded term, memory constant in n_t; J_BGPO <= J_ELBO; equal value and
gradient on-policy, where every x_ij = 0), see docs/dllm.md and tests/test_dllm_bgpo.py.

on_policy=True (default, the published regime: one optimizer update per rollout batch): ell_old = stopgrad(
ell_theta) from the same forward, no extra pass. on_policy=False stores ell_old for all n_t masks at rollout
(n_t no-grad forwards per sample) for multi-update schedules (train.updates_per_step / inner_epochs > 1);
there the bound is only approximately the ELBO objective. No clipping and no KL term (not published).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrl.algorithms.base import Algorithm, register_algorithm
from genrl.masked_rollout import ELBOConfig, ELBOMethod, elbo_term, mc_masks, sequences


@dataclass
class BGPOConfig(ELBOConfig):
    name: str = "bgpo"


def bound_terms(adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """g(A, x) elementwise: A (1 + x) where A >= 0, A exp(x) where A < 0 (a lower bound of A exp(x))."""
    return torch.where(adv >= 0, adv * (1 + x), adv * torch.exp(x))


@register_algorithm("bgpo")
class BGPO(ELBOMethod, Algorithm):
    Config = BGPOConfig

    def losses(self, policy, mb, ctx):
        n = self.config.mc_samples
        tokens, keys, p_len = sequences(policy, mb)
        masks, weights = mc_masks(mb.mc_seed, tokens.shape[1] - p_len, n)
        adv = mb.advantages.to(tokens.device).float()
        for j in range(n):
            with ctx.amp():
                ell = elbo_term(policy, tokens, keys, p_len, masks[j], weights[j])
            old = ell.detach() if self.config.on_policy else mb.old_elbo[:, j].to(ell.device)
            x = ell - old
            loss = -bound_terms(adv, x).mean() / n
            yield loss, {"elbo_per_token": float(ell.detach().mean()) / (tokens.shape[1] - p_len) / n,
                         "log_ratio_abs": float(x.detach().abs().mean()) / n}
