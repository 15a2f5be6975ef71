"""Rollouts and ELBO terms of masked diffusion LMs, shared by the dLLM methods (bgpo, elbo_grpo, diffu_grpo).

Masked diffusion convention: t in [0, 1], t = 1 every response token is masked, t = 0 clean; the prompt is
never masked (except by diffu-GRPO's prompt-masking augmentation). Sequences are [left-padded prompt | response
of response_length tokens]; the response includes its end-of-sequence padding (as LLaDA trains and scores it).

ELBO (LLaDA): log pi(o | q) >= E_t E_{o_t} [ (1/t) sum_{masked i} log p(o^i | q, o_t) ]. We use LLaDA's
lower-variance form with an exact masked count: draw l ~ U{1..L}, mask l response positions uniformly, weight
L / l. One Monte-Carlo term is
    ell = (L / l) * sum_{masked i} log p_theta(o^i | q, o_masked)      (a SUM over tokens: a log-likelihood)
and n_t terms of a response are stratified over the count as LLaDA's eval_llada.py does: k ~ U{1..L},
l_r = ((round(linspace(k, k + (n_t - 1) L / n_t)) - 1) mod L) + 1 for r = 0..n_t-1.
All randomness is drawn from per-sample seeds stored in the rollout batch, so the current, old and reference
policies see identical masks and a resumed run draws the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrl.algorithms.base import AlgorithmConfig, Batch


@dataclass
class MaskedDLLMConfig(AlgorithmConfig):
    """Generation settings shared by the dLLM methods (LLaDA sampler: block semi-autoregressive decoding,
    low-confidence remasking, Gumbel-max sampling at `temperature`)."""

    response_length: int = 16  # generated tokens per response (LLaDA-8B recipes: 512 / 256)
    block_length: int = 16  # semi-autoregressive block size (LLaDA default 32); must divide response_length
    diffusion_steps: int = 16  # denoising steps per response; a multiple of response_length / block_length
    temperature: float = 0.3  # rollout sampling temperature (d1 sudoku: 0.3)
    remasking: str = "low_confidence"  # rollout unmasking order: low_confidence | random
    eval_remasking: str | None = None  # evaluation unmasking order (None = remasking)
    eval_temperature: float = 0.0  # evaluation decoding (0 = greedy, deterministic)
    eval_diffusion_steps: int | None = None  # evaluation denoising steps (None = diffusion_steps)


def validate_generation(cfg: MaskedDLLMConfig) -> None:
    """One-line errors naming the keys (called when the algorithm is built, before anything is written)."""
    import samplers

    for key in ("response_length", "block_length", "diffusion_steps"):
        v = getattr(cfg, key)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"algorithm.{key} must be an integer >= 1, got {v!r}")
    if cfg.response_length % cfg.block_length:
        raise ValueError(f"algorithm.response_length ({cfg.response_length}) does not divide into blocks of "
                         f"algorithm.block_length ({cfg.block_length}); pick a block_length that divides it")
    blocks = cfg.response_length // cfg.block_length
    for key in ("diffusion_steps", "eval_diffusion_steps"):
        v = getattr(cfg, key)
        if v is not None and (v < 1 or v % blocks):
            raise ValueError(f"algorithm.{key} ({v}) must be a positive multiple of the number of blocks "
                             f"response_length / block_length = {blocks}")
    for key in ("remasking", "eval_remasking"):
        v = getattr(cfg, key)
        if v is not None and v not in samplers.REMASKING:
            raise ValueError(f"algorithm.{key} must be one of {samplers.REMASKING}, got {v!r}")
    if cfg.temperature < 0 or cfg.eval_temperature < 0:
        raise ValueError("algorithm.temperature and algorithm.eval_temperature must be >= 0")


def check_prompt_lengths(policy, prompts: list[str], response_length: int, where: str) -> None:
    """Every prompt plus the response must fit the model's context (one-line error naming the fix)."""
    if policy.max_length is None or not prompts:
        return
    longest = max(len(p) for p in policy.prompt_ids(prompts))
    if longest + response_length > policy.max_length:
        raise ValueError(f"{where}: a prompt of {longest} tokens + algorithm.response_length {response_length} "
                         f"exceeds the model's context of {policy.max_length} tokens; shorten the prompts or "
                         "lower algorithm.response_length")


def left_pad(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad 1-D id tensors -> (ids [B, P], keys [B, P] bool, False on padding)."""
    p = max(len(r) for r in rows)
    ids = torch.full((len(rows), p), pad_id, dtype=torch.long)
    keys = torch.zeros(len(rows), p, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, p - len(r):] = r
        keys[i, p - len(r):] = True
    return ids, keys


def sequences(policy, b: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(tokens [B, P + L], keys [B, P + L], P) of a rollout (sub-)batch on the policy's device."""
    ids, keys = left_pad(b.prompt_ids, policy.pad_id)
    resp = b.response.cpu()
    tokens = torch.cat([ids, resp], dim=1)
    keys = torch.cat([keys, torch.ones_like(resp, dtype=torch.bool)], dim=1)
    return tokens.to(policy.device), keys.to(policy.device), ids.shape[1]


@torch.no_grad()
def generate(policy, prompts: list[str], cfg: MaskedDLLMConfig, temperature: float,
             generator: torch.Generator | None, steps: int | None = None,
             remasking: str | None = None) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """Batched LLaDA sampling: (prompt ids per sample, response ids [B, L] on CPU, decoded texts)."""
    import samplers

    rows = [torch.tensor(r, dtype=torch.long) for r in policy.prompt_ids(prompts)]
    ids, keys = left_pad(rows, policy.pad_id)
    full_keys = torch.cat([keys, torch.ones(len(rows), cfg.response_length, dtype=torch.bool)], 1).to(policy.device)
    res = samplers.masked_diffusion_sample(
        lambda x: policy.logits(x, full_keys), ids.to(policy.device), gen_length=cfg.response_length,
        block_length=cfg.block_length, steps=steps or cfg.diffusion_steps, mask_id=policy.mask_id,
        remasking=remasking or cfg.remasking, temperature=temperature, generator=generator)
    resp = res.response.cpu()
    return rows, resp, policy.decode(resp)


def text_rollout(policy, prompts: list[str], groups: torch.Tensor, cfg: MaskedDLLMConfig, ctx) -> Batch:
    """Sampled responses for the prompts; `outputs` (texts) are what the loop's reward scores. `mc_seed` [B]
    seeds every later Monte-Carlo mask of a sample."""
    rows, resp, texts = generate(policy, prompts, cfg, cfg.temperature, ctx.generator)
    seeds = torch.randint(0, 2**62, (len(prompts),), generator=ctx.generator, dtype=torch.long)
    return Batch(prompts=list(prompts), group=groups.clone(), prompt_ids=rows, response=resp, outputs=texts,
                 mc_seed=seeds)


@torch.no_grad()
def text_eval_outputs(policy, prompts: list[str], seeds: list[int], cfg: MaskedDLLMConfig) -> Batch:
    """Evaluation decoding at eval_temperature (0 = greedy: seeds unused; > 0: the batch's first seed)."""
    gen = torch.Generator(device=policy.device).manual_seed(int(seeds[0])) if cfg.eval_temperature > 0 else None
    _, _, texts = generate(policy, prompts, cfg, cfg.eval_temperature, gen, cfg.eval_diffusion_steps,
                           cfg.eval_remasking)
    return Batch(prompts=list(prompts), outputs=texts)


# ---- ELBO Monte-Carlo terms -------------------------------------------------------------------------------------
def stratified_counts(length: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """LLaDA's stratified masked counts for n copies of one response of `length` tokens: [n] in 1..length."""
    k = int(torch.randint(1, length + 1, (), generator=generator))
    x = torch.round(torch.linspace(float(k), k + (n - 1) * (length / n), steps=n)).long()
    return ((x - 1) % length) + 1


def mc_masks(seeds: torch.Tensor, length: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample stratified masks from seeds [B]: (masked [n, B, L] bool, weights L / l as [n, B] float)."""
    masks = torch.zeros(n, len(seeds), length, dtype=torch.bool)
    weights = torch.zeros(n, len(seeds))
    for i, s in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(int(s))
        counts = stratified_counts(length, n, g)
        for r in range(n):
            pos = torch.randperm(length, generator=g)[: int(counts[r])]
            masks[r, i, pos] = True
            weights[r, i] = length / float(counts[r])
    return masks, weights


def elbo_term(policy, tokens: torch.Tensor, keys: torch.Tensor, p_len: int, masked: torch.Tensor,
              weight: torch.Tensor) -> torch.Tensor:
    """One Monte-Carlo ELBO term per sample [B]: weight * sum over the masked response positions of
    log p(o^i | q, o_masked). masked [B, L] bool, weight [B]."""
    masked = masked.to(tokens.device)
    noisy = tokens.clone()
    noisy[:, p_len:] = torch.where(masked, torch.full_like(masked, policy.mask_id, dtype=torch.long),
                                   tokens[:, p_len:])
    logp = torch.log_softmax(policy.logits(noisy, keys)[:, p_len:], dim=-1)
    tok_logp = logp.gather(-1, tokens[:, p_len:, None]).squeeze(-1)
    return weight.to(tok_logp.device) * (tok_logp * masked).sum(dim=1)


@torch.no_grad()
def elbo_terms_nograd(policy, b: Batch, n: int) -> torch.Tensor:
    """All n ELBO terms of every sample of a batch without graphs: [B, n] (old-policy values)."""
    tokens, keys, p_len = sequences(policy, b)
    masks, weights = mc_masks(b.mc_seed, tokens.shape[1] - p_len, n)
    return torch.stack([elbo_term(policy, tokens, keys, p_len, masks[j], weights[j]) for j in range(n)], 1).cpu()


class MaskedDLLMAlgorithm:
    """Mixin of the dLLM methods: text rollouts, deterministic text evaluation and the input checks.
    Use as `class BGPO(MaskedDLLMAlgorithm, Algorithm)`."""

    policy_kind = "masked_lm"

    def __init__(self, config, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        validate_generation(config)

    def check_inputs(self, policy, prompt_sets: dict[str, list[str]]) -> None:
        super().check_inputs(policy, prompt_sets)
        for key, prompts in prompt_sets.items():
            check_prompt_lengths(policy, prompts, self.config.response_length, key)

    def rollout(self, policy, prompts, groups, ctx) -> Batch:
        return text_rollout(policy, prompts, groups, self.config, ctx)

    @torch.no_grad()
    def eval_outputs(self, policy, prompts, seeds, metadata, ev, ctx) -> Batch:
        return text_eval_outputs(policy, prompts, seeds, self.config)


@dataclass
class ELBOConfig(MaskedDLLMConfig):
    """The keys ELBOMethod reads (shared by BGPO and ELBO-GRPO)."""

    mc_samples: int = 16  # n_t Monte-Carlo ELBO samples per response (BGPO published: 16)
    on_policy: bool = True  # ell_old = stopgrad(ell_theta) (exact for one update per rollout batch)


class ELBOMethod(MaskedDLLMAlgorithm):
    """Mixin of the ELBO-ratio methods (BGPO, ELBO-GRPO): `algorithm.mc_samples` n_t >= 1 and, off-policy, the
    old policy's n_t ELBO terms stored at rollout (on-policy they equal the detached current ones)."""

    def __init__(self, config, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        if config.mc_samples < 1:
            raise ValueError(f"algorithm.mc_samples must be >= 1, got {config.mc_samples}")

    def rollout(self, policy, prompts, groups, ctx) -> Batch:
        b = super().rollout(policy, prompts, groups, ctx)
        if not self.config.on_policy:
            b.old_elbo = elbo_terms_nograd(policy, b, self.config.mc_samples)
        return b
