"""Advantage Weighted Matching (Xue et al., arXiv 2509.25050; code scxue/advantage_weighted_matching @be51372),
reimplemented from the reference notes (flow_methods.md §3).

Time convention: t = sigma in [0, 1], t = 1 is noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v* = eps - x0.

The method, top to bottom:
  1. Rollout with ANY sampler (the reference: SA-Solver, mildly stochastic; no CFG) by the current policy. Only the
     clean final samples x0 are kept.
  2. Group-relative advantage, clipped to +-adv_clip_max and scaled to [-1, 1]: A = clip(A_raw, -5, 5) / 5.
  3. Per micro-batch, n_train (= 6) training times shared by its B samples, one per stratum of the rollout grid's
     step indices (`stratified_indices`); fresh eps; one forward over all (t, sample) pairs (batch n_train * B).
         e    = mean_elements (v_theta(x_t, t) - (eps - x0))^2            per (t, sample), float64
         l    = -t ((e + 1e-10)^p - (1e-10)^p) / p                       "ghuber" weighting, p = 0.25
         ratio = exp(l - sg(l_old)),  l_old = sg(l) (strictly on-policy, so ratio == 1)
         L    = mean max(-A ratio, -A clip(ratio, 1 - c, 1 + c))
              + kl_beta mean (v_theta - v_ref)^2 + ema_beta mean (v_theta - v_ema)^2
     The gradient is A * grad[t e^p / p]: advantage-weighted, robustly weighted flow matching.
  4. After each optimizer step: theta_ema <- d theta_ema + (1 - d) theta, d = min(0.3, 0.001 step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrl.algorithms.base import Algorithm, AlgorithmConfig, Batch, StepContext, register_algorithm
from genrl.ema import soft_update_

# ----------------------------------------------------------------------------------------------------------------
# Pure math (tested against hand-computed cases in tests/test_awm_math.py)
# ----------------------------------------------------------------------------------------------------------------

DISCRETE_TIME_TYPES = ("discrete_wo_init", "discrete", "discrete_with_init")
TIME_TYPES = DISCRETE_TIME_TYPES + ("logit_normal", "uniform")


def _strata(lo: int, hi: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """One integer uniformly from each of n strata [floor(b_k), floor(b_{k+1})) of [lo, hi), b = linspace(lo, hi)."""
    bounds = torch.linspace(lo, hi, n + 1, dtype=torch.float64).floor().long()
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    width = (bounds[1:] - bounds[:-1]).double()
    return bounds[:-1] + (u * width).floor().long().clamp_max((width - 1).long())


def stratified_indices(
    num_steps: int,
    n_train: int = 6,
    time_type: str = "discrete_wo_init",
    timestep_fraction: float = 0.9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n_train grid step indices for the discrete time types, hi = int(num_steps * timestep_fraction):
    `discrete_wo_init` one per stratum of [1, hi) (excludes t = 1), `discrete` one per stratum of [0, hi), and
    `discrete_with_init` index 0 (t = 1) plus one per each of n_train - 1 strata of [1, hi). Stratum k is
    [floor(b_k), floor(b_{k+1})) with b = linspace(lo, hi, n + 1); for 14 steps and 6 strata, discrete_wo_init
    gives {1}, {2,3}, {4,5}, {6,7}, {8,9}, {10,11}."""
    if time_type not in DISCRETE_TIME_TYPES:
        raise ValueError(f"not a discrete AWM time_type: {time_type!r}; choose one of {', '.join(DISCRETE_TIME_TYPES)}")
    hi = int(num_steps * timestep_fraction)
    lo, n = (0, n_train) if time_type == "discrete" else (1, n_train - (time_type == "discrete_with_init"))
    if hi - lo < n:
        raise ValueError(
            f"AWM needs at least n_train={n_train} grid steps in [{lo}, {hi}); raise the rollout steps or lower "
            "algorithm.n_train"
        )
    idx = _strata(lo, hi, n, generator) if n > 0 else torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.zeros(1, dtype=torch.long), idx]) if time_type == "discrete_with_init" else idx


def _shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def train_times(grid: torch.Tensor, n_train: int, batch: int, time_type: str = "discrete_wo_init",
                timestep_fraction: float = 0.9, time_shift: float = 3.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times t for one micro-batch, [n_train * batch], t-major ([t_0]*B, [t_1]*B, ... for shared times).

    Discrete types: grid[stratified_indices(...)], shared by the batch's samples. `logit_normal`: n_train
    stratified normal quantiles z_k = Phi^-1((k + U_k) / n_train), shuffled, t = shift(sigmoid(z)) clamped to
    >= 0.01, shared by the batch. `uniform`: for EACH sample, n_train stratified uniforms on [0.2, 1]
    ((k + U) / n_train rescaled), shuffled per sample, then shifted (times differ between samples). shift(t) =
    s t / (1 + (s - 1) t) with s = time_shift. As the reference's `time_type` options."""
    if time_type in DISCRETE_TIME_TYPES:
        idx = stratified_indices(len(grid) - 1, n_train, time_type, timestep_fraction, generator)
        return grid[idx].float().repeat_interleave(batch)
    if time_type == "logit_normal":
        u = (torch.arange(n_train, dtype=torch.float64) + torch.rand(n_train, generator=generator,
                                                                      dtype=torch.float64)) / n_train
        z = torch.special.ndtri(u.clamp(1e-7, 1 - 1e-7))
        z = z[torch.randperm(n_train, generator=generator)]
        return _shift(torch.sigmoid(z), time_shift).clamp_min(0.01).float().repeat_interleave(batch)
    if time_type == "uniform":
        u = (torch.arange(n_train, dtype=torch.float64)[:, None]
             + torch.rand(n_train, batch, generator=generator, dtype=torch.float64)) / n_train
        m = 0.2 + 0.8 * u
        order = torch.rand(n_train, batch, generator=generator).argsort(dim=0)
        return _shift(torch.gather(m, 0, order), time_shift).float().reshape(-1)
    raise ValueError(f"unknown AWM time_type {time_type!r}; choose one of {', '.join(TIME_TYPES)}")


def scale_advantages(advantages: torch.Tensor, adv_clip_max: float = 5.0, advantage_max: float = 1.0) -> torch.Tensor:
    """A = clip(A_raw, -adv_clip_max, adv_clip_max) * (advantage_max / adv_clip_max), i.e. into [-1, 1]."""
    if adv_clip_max <= 0:
        raise ValueError(f"adv_clip_max must be > 0, got {adv_clip_max}; the reference uses 5")
    return advantages.float().clamp(-adv_clip_max, adv_clip_max) * (advantage_max / adv_clip_max)


def ghuber_logprob(err: torch.Tensor, t: torch.Tensor, p: float = 0.25, eps: float = 1e-10) -> torch.Tensor:
    """The 'log-prob surrogate' l = -t ((e + eps)^p - eps^p) / p, computed in float64 (e >= 0, t broadcastable)."""
    if not 0 < p <= 1:
        raise ValueError(f"ghuber power p must be in (0, 1], got {p}; the reference uses 0.25")
    e = err.to(torch.float64)
    return -t.to(torch.float64) * ((e + eps) ** p - eps**p) / p


def weighted_logprob(err: torch.Tensor, t: torch.Tensor, weighting: str = "ghuber", p: float = 0.25) -> torch.Tensor:
    """l(theta) for the reference's weightings: ghuber (default), huber (-t (sqrt(e + 1e-10) - 1e-5)), uniform (-e),
    t (-t e), t2 (-t^2 e)."""
    e, t = err.to(torch.float64), t.to(torch.float64)
    if weighting == "ghuber":
        return ghuber_logprob(e, t, p)
    if weighting == "huber":
        return -t * (torch.sqrt(e + 1e-10) - 1e-5)
    if weighting == "uniform":
        return -e
    if weighting == "t":
        return -t * e
    if weighting == "t2":
        return -t * t * e
    raise ValueError(f"unknown AWM weighting {weighting!r}; choose ghuber, huber, uniform, t or t2")


def awm_loss(
    v_theta: torch.Tensor,
    target: torch.Tensor,
    t: torch.Tensor,
    advantages: torch.Tensor,
    weighting: str = "ghuber",
    p: float = 0.25,
    clip_range: float = 1.0,
    logprob_old: torch.Tensor | None = None,
    v_ref: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    v_ema: torch.Tensor | None = None,
    ema_beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The AWM loss on one forward batch of (t, sample) pairs.

    v_theta, target (= eps - x0), v_ref, v_ema: [N, ...]; t, advantages (already scaled to [-1, 1]): [N].
    logprob_old defaults to sg(l) (on-policy, ratio == 1). Returns (loss, metrics).
    """
    err = (v_theta.to(torch.float64) - target.to(torch.float64)).square().flatten(1).mean(1)
    logp = weighted_logprob(err, t, weighting, p)
    old = logp.detach() if logprob_old is None else logprob_old.to(torch.float64).detach()
    ratio = torch.exp(logp - old)
    adv = advantages.to(torch.float64)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    policy_loss = torch.maximum(unclipped, clipped).mean()
    loss = policy_loss.float()
    metrics = {
        "policy_loss": policy_loss.item(),
        "fm_error": err.mean().item(),
        "ratio_mean": ratio.mean().item(),
        "adv_abs_mean": adv.abs().mean().item(),
    }
    vt = v_theta.float()
    if kl_beta > 0:
        if v_ref is None:
            raise ValueError("kl_beta > 0 needs v_ref (the base model's velocity, LoRA disabled)")
        kl = (vt - v_ref.float().detach()).square().mean()
        loss = loss + kl_beta * kl
        metrics["kl_loss"] = kl.item()
    if ema_beta > 0:
        if v_ema is None:
            raise ValueError("ema_beta > 0 needs v_ema (the EMA policy's velocity)")
        kl_ema = (vt - v_ema.float().detach()).square().mean()
        loss = loss + ema_beta * kl_ema
        metrics["kl_ema_loss"] = kl_ema.item()
    metrics["loss"] = loss.item()
    return loss, metrics


def ema_policy_decay(step: int, cap: float = 0.3, rate: float = 0.001) -> float:
    """d for theta_ema <- d theta_ema + (1 - d) theta after optimizer step `step`: min(cap, rate * step)
    (the reference's kl_ema_decay_type="linear")."""
    return min(cap, rate * step)



# ----------------------------------------------------------------------------------------------------------------
# The algorithm on the one loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AWMConfig(AlgorithmConfig):
    """`algorithm:` section for AWM (reference defaults, SD3.5-M GenEval: config/dgx_awm.py)."""

    name: str = "awm"
    n_train: int = 6  # training times per micro-batch, one per stratum, shared by its samples
    # discrete_wo_init (GenEval, OCR) | discrete (PickScore) | discrete_with_init | logit_normal | uniform
    time_type: str = "discrete_wo_init"
    timestep_fraction: float = 0.9  # discrete types: strata cover grid indices [lo, int(steps * fraction))
    time_shift: float = 3.0  # logit_normal / uniform: t -> s t / (1 + (s - 1) t)
    weighting: str = "ghuber"  # ghuber | huber | uniform | t | t2
    ghuber_p: float = 0.25
    adv_clip_max: float = 5.0  # A = clip(A_raw, +-adv_clip_max) * advantage_max / adv_clip_max
    advantage_max: float = 1.0
    clip_range: float = 1.0  # PPO clip; 1.0 = no-op (the reference)
    kl_beta: float = 0.001  # weight of mean (v_theta - v_base)^2 (GenEval 0.001, OCR 0.003, PickScore 0.0001)
    ema_beta: float = 1.0  # weight of mean (v_theta - v_ema)^2
    ema_decay_cap: float = 0.3  # EMA-policy decay d = min(cap, rate * update)
    ema_decay_rate: float = 0.001

    def __post_init__(self):
        if self.time_type not in TIME_TYPES:
            raise ValueError(f"algorithm.time_type {self.time_type!r} unknown; choose one of {', '.join(TIME_TYPES)}")
        weighted_logprob(torch.zeros(1), torch.zeros(1), self.weighting, self.ghuber_p)  # validates weighting, p
        if self.n_train < 1:
            raise ValueError(f"algorithm.n_train must be >= 1, got {self.n_train} (reference: 6)")


@register_algorithm("awm")
class AWM(Algorithm):
    """Advantage Weighted Matching: advantage-weighted ghuber flow matching on re-noised clean samples."""

    Config = AWMConfig

    def __init__(self, config: AWMConfig, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        if sample_cfg.cfg_scale != 1.0:
            raise ValueError(f"AWM is CFG-free (the reference trains and samples with guidance 1.0); set "
                             f"sample.cfg_scale=1 (eval.cfg_scale may still differ), got {sample_cfg.cfg_scale}")
        if config.time_type in DISCRETE_TIME_TYPES:  # validates the strata against the rollout grid
            stratified_indices(sample_cfg.steps, config.n_train, config.time_type, config.timestep_fraction)
        self.ema: dict[str, torch.Tensor] | None = None  # theta_ema (trainable tensors)

    def setup(self, policy, ctx: StepContext) -> None:
        if self.ema is None:
            self.ema = policy.trainable_state()
        else:  # resumed from a checkpoint (CPU tensors): keep it next to the weights
            params = dict(policy.named_parameters())
            self.ema = {k: v.to(params[k].device, params[k].dtype) for k, v in self.ema.items()}

    def rollout(self, policy, prompts, groups, ctx: StepContext) -> Batch:
        """The configured sampler; with sample.sde_window_size w > 0 only steps [start, start + w) are stochastic,
        start ~ UniformInt[lo, hi - w] (the SD3.5 configs use this to make the SDE act where the reference's
        SA-Solver is stochastic, 0.3 <= t <= 0.9)."""
        from genrl.rollout import flow_rollout

        s = self.sample_cfg
        spec = self.rollout_spec()
        if s.sde_window_size > 0:
            lo, hi = s.sde_window_range if s.sde_window_range is not None else (0, s.steps)
            spec.sde_window = (ctx.rng.randint(lo, hi - s.sde_window_size), s.sde_window_size)
        return flow_rollout(policy, prompts, groups, spec, ctx, resolution=s.resolution)

    def loss(self, policy, mb: Batch, ctx: StepContext):
        cfg = self.config
        x0 = mb.samples.to(ctx.device, torch.float32)
        b = x0.shape[0]
        grid = self.rollout_grid(mb)
        t = train_times(grid, cfg.n_train, b, cfg.time_type, cfg.timestep_fraction, cfg.time_shift,
                        ctx.generator).to(ctx.device)  # t-major: [t0]*B, [t1]*B, ...
        x0r = x0.repeat(cfg.n_train, *([1] * (x0.ndim - 1)))
        eps = torch.randn(x0r.shape, generator=ctx.generator, device=ctx.generator.device).to(ctx.device)
        tb = t.reshape(-1, *([1] * (x0.ndim - 1)))
        x_t = (1 - tb) * x0r + tb * eps
        cond = _repeat(mb.cond, cfg.n_train)
        adv = mb.advantages.float().to(ctx.device)
        adv = adv.repeat(cfg.n_train, *([1] * (adv.ndim - 1)))  # t-major, as x0r
        adv = scale_advantages(self.stage_advantages(adv, t), cfg.adv_clip_max, cfg.advantage_max)
        # no-grad forwards first (use_trainable swaps parameter values in place)
        v_ref = v_ema = None
        with ctx.no_autograd(), ctx.amp():
            if cfg.kl_beta > 0:
                with policy.disable_adapter():
                    v_ref = policy.velocity(x_t, t, cond)
            if cfg.ema_beta > 0:
                with policy.use_trainable(self.ema):
                    v_ema = policy.velocity(x_t, t, cond)
        with ctx.amp():
            v_theta = policy.velocity(x_t, t, cond)
        return awm_loss(
            v_theta, eps - x0r, t, adv, cfg.weighting, cfg.ghuber_p, cfg.clip_range,
            v_ref=v_ref, kl_beta=cfg.kl_beta, v_ema=v_ema, ema_beta=cfg.ema_beta,
        )

    def after_step(self, policy, ctx: StepContext) -> None:
        d = ema_policy_decay(ctx.update, self.config.ema_decay_cap, self.config.ema_decay_rate)
        soft_update_(self.ema, policy.trainable_state(), d)
        ctx.extra["awm_ema_decay"] = d

    def state_dict(self) -> dict:
        return {"ema": {k: v.detach().cpu() for k, v in (self.ema or {}).items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("ema"):
            self.ema = {k: v.clone() for k, v in state["ema"].items()}


def _repeat(cond, n: int):
    """Repeat batch-first conditioning n times along dim 0 (t-major, matching x.repeat(n, ...))."""
    if isinstance(cond, torch.Tensor):
        return cond.repeat(n, *([1] * (cond.ndim - 1)))
    if isinstance(cond, dict):
        return {k: _repeat(v, n) for k, v in cond.items()}
    if isinstance(cond, list):
        return cond * n
    return cond
