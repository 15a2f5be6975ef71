"""CTRL: add a new condition y to a pre-trained flow model with RL (Zhao et al., ICLR 2025, arXiv 2406.12120;
code zhaoyl18/CTRL), reimplemented from the reference notes (other_methods.md §1, beyond_images.md §5).

Time convention: t = sigma in [0, 1], t = 1 is noise, t = 0 is data, x_t = (1 - t) x0 + t eps, v = eps - x0.
Sampling runs from t = 1 down the policy's sigma grid; step i goes from t_i to t_{i+1} < t_i.

Target: p(x | c, y) ∝ p_pre(x | c) p(y | x)^gamma, reached by maximising E[gamma log p(y | x0)] - KL(P_theta || P_pre)
over path measures, with an offline-trained, calibrated clean-image classifier p(y | x) (`genrl classifier`).
The method, top to bottom (one micro-batch):
  1. rollout() only draws the labels y ~ label_probs and the initial noise x_1 (and encodes the prompts); its
     reward is 0 (CTRL's reward is computed, with gradients, in the loss; metrics: train/log_p_y, train/kl).
  2. losses(): a DIFFERENTIABLE stochastic rollout (reparameterised noise) of the fine-tuned model with label y and,
     on the same states, the frozen base (LoRA disabled, no condition); CFG on both (fine-tuned negative: "" with
     the NULL label; base negative: ""). At each step the two Gaussian steps share the std s_i:
         x_{i+1} = mu_theta(x_i) + s_i z_i,     KL_i = mean_dims (mu_theta - mu_pre)^2 / (2 s_i^2)   [B]
     (the reference's per-element MEAN, i.e. 1 / dims of the true Gaussian KL; deterministic steps, s_i = 0, have
     no KL term). Truncated back-propagation: at each step K ~ randint(lo, hi) (default 0..steps, inclusive); if
     i < K both models' outputs at step i are computed without gradient (the latent path stays attached). Each
     differentiated model call is gradient-checkpointed (unless the transformer checkpoints its own blocks).
     `tuned_min_sigma` > 0 (a genrl option, reference 0): the fine-tuned model acts only at t >= tuned_min_sigma;
     the steps below run the base for both (KL_i = 0, the base's output still carries the reward's gradient back
     to x_t). The objective is unchanged; the policy family is the base with a tuned noisy-step range. Saved as
     the condition's min_sigma, so sampling applies the same split (genrl/policies/condition.py).
  3. L = loss_coeff * mean_B[-log(p(y | x0) + 1e-6)] + kl_weight * mean_B[sum_i KL_i]; one backward. The loop clips
     the gradient norm (train.max_grad_norm; reference 5) over LoRA + embedding and steps AdamW with two parameter
     groups: LoRA at train.lr, the condition embedding at algorithm.embed_lr (reference weight decay 0.1).
The condition embedding (genrl/policies/condition.py) is zero-initialised and added to the timestep embedding; its
NULL row (the unconditional branch) never receives gradient.

Sampler: the reference uses DDIM with eta = 1 on SD1.5; genrl's flow form of exactly that step is
`sample.method: ddim` with `sample.noise_level: 1.0` (samplers/sde.py): std = s sqrt(1 - ((1 - t) s / ((1 - s) t))^2),
mean = (1 - s) x0_hat + sqrt(s^2 - std^2) eps_hat, the DDPM posterior in the flow parameterisation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

import samplers
from genrl.algorithms.base import Algorithm, AlgorithmConfig, Batch, StepContext, register_algorithm
from genrl.policies.condition import attach_condition, gated_velocity, get_condition, label_ids

LOG_EPS = 1e-6  # the reference's log(p + 1e-6)

# ----------------------------------------------------------------------------------------------------------------
# Pure math (tests/test_ctrl_math.py checks these against hand-computed cases)
# ----------------------------------------------------------------------------------------------------------------


def step_kl(mean_theta: torch.Tensor, mean_pre: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[B] KL between N(mean_theta, std^2) and N(mean_pre, std^2) per element, AVERAGED over the non-batch dims:
    mean_dims (mean_theta - mean_pre)^2 / (2 std^2). A deterministic step (std == 0) gives 0."""
    std = std.float()
    safe = torch.where(std > 0, std, torch.ones_like(std))
    kl = (mean_theta.float() - mean_pre.float()) ** 2 / (2 * safe**2)
    kl = torch.where(std > 0, kl, torch.zeros_like(kl))
    return kl.flatten(1).mean(1)


def ctrl_loss(log_p_y: torch.Tensor, kl_sum: torch.Tensor, loss_coeff: float, kl_weight: float
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """loss_coeff * mean(-log(p + 1e-6)) + kl_weight * mean(kl_sum); log_p_y, kl_sum: [B]."""
    nll = -torch.log(log_p_y.exp() + LOG_EPS)
    loss = loss_coeff * nll.mean() + kl_weight * kl_sum.mean()
    return loss, {"loss": loss.item(), "reward_nll": nll.mean().item(), "log_p_y": log_p_y.mean().item(),
                  "p_y": log_p_y.exp().mean().item(), "kl": kl_sum.mean().item()}


def detach_schedule(num_steps: int, lo: int, hi: int, rng) -> list[bool]:
    """Per step i: True if the model outputs are differentiated, i.e. i >= K with a fresh K ~ randint(lo, hi)
    (inclusive) drawn at every step, as the reference's truncated_backprop_rand. P(step i differentiated) =
    (i - lo + 1) / (hi - lo + 1) clipped to [0, 1]."""
    return [i >= rng.randint(lo, hi) for i in range(num_steps)]


# ----------------------------------------------------------------------------------------------------------------
# The algorithm on the one loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CTRLConfig(AlgorithmConfig):
    """`algorithm:` section for CTRL (reference defaults: zhaoyl18/CTRL config/condition.py, aesthetic task)."""

    name: str = "ctrl"
    classifier: str = ""  # directory written by `genrl classifier` (rewards.classifier.ImageClassifier)
    labels: list[str] | None = None  # the new condition's labels, classes of the classifier; None = all its classes
    # (a class no label names, e.g. a "malformed" reject class, only takes probability away from every label)
    label_probs: list[float] | None = None  # y ~ Categorical(label_probs); None = uniform (reference: uniform)
    loss_coeff: float = 0.1  # weight of -log p(y | x0)
    kl_weight: float = 0.01  # weight of the summed per-step KL (mean over dims)
    embed_lr: float = 5.0e-3  # lr of the condition embedding (LoRA uses train.lr; reference 1e-4 / 5e-3)
    truncated_backprop: bool = True
    truncation_range: list[int] | None = None  # [lo, hi] of K ~ randint(lo, hi); None = [0, sample.steps]
    gradient_checkpointing: bool = True  # checkpoint every differentiated model call
    grad_through_base: bool = True  # the frozen base's output carries gradient to x_t (as the reference)
    tuned_min_sigma: float = 0.0  # the fine-tuned model acts at sigma >= this only; the base below (0 = reference)

    def __post_init__(self):
        if self.loss_coeff < 0 or self.kl_weight < 0:
            raise ValueError("algorithm.loss_coeff and algorithm.kl_weight must be >= 0")


@register_algorithm("ctrl")
class CTRL(Algorithm):
    """Conditioning by direct reward back-propagation through a stochastic sampler with a per-step KL to the base."""

    Config = CTRLConfig
    learns_from_advantages = False  # the classifier reward is back-propagated inside the loss

    def __init__(self, config: CTRLConfig, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        if sample_cfg.method not in samplers.SDE_KINDS or sample_cfg.noise_level <= 0:
            raise ValueError(f"CTRL samples stochastically: set sample.method to one of {samplers.SDE_KINDS} "
                             "(reference: ddim) with sample.noise_level > 0 (reference: 1.0)")
        if advantage_cfg.filter_zero_std:
            raise ValueError("CTRL's rollout reward is 0 (the reward is back-propagated in the loss): set "
                             "advantage.filter_zero_std=false")
        from rewards.classifier import ImageClassifier

        if not config.classifier:
            raise ValueError("algorithm.classifier is required: a directory from `genrl classifier --data DIR --out "
                             "DIR` (the offline-trained p(y | x))")
        self.classifier = ImageClassifier.from_pretrained(config.classifier)
        labels = [str(x) for x in config.labels] if config.labels is not None else list(self.classifier.labels)
        unknown = sorted(set(labels) - set(self.classifier.labels))
        if unknown or len(set(labels)) != len(labels) or len(labels) < 2:
            raise ValueError(f"algorithm.labels {labels} must be two or more distinct classes of the classifier "
                             f"{self.classifier.labels} ({config.classifier}); unknown: {unknown}")
        self.labels = labels
        self.clf_index = self.classifier.label_index(labels)  # condition id -> classifier class
        probs = config.label_probs if config.label_probs is not None else [1.0] * len(labels)
        if len(probs) != len(labels) or any(p < 0 for p in probs) or sum(probs) <= 0:
            raise ValueError(f"algorithm.label_probs {probs} must give one weight >= 0 per label {labels}")
        self.label_probs = torch.tensor(probs, dtype=torch.float64) / sum(probs)
        lo, hi = config.truncation_range if config.truncation_range is not None else (0, sample_cfg.steps)
        if not 0 <= lo <= hi:
            raise ValueError(f"algorithm.truncation_range {config.truncation_range} must be [lo, hi], 0 <= lo <= hi")
        self.trunc = (int(lo), int(hi))
        self._block_checkpointing = False

    # ---- model set-up (before the optimizer is built) ------------------------------------------------------
    def configure_policy(self, policy) -> None:
        if not hasattr(policy, "transformer"):
            raise ValueError(f"CTRL needs a transformer flow policy (shapes, SD3, FLUX); got {type(policy).__name__}")
        attach_condition(policy.transformer, self.labels, self.config.tuned_min_sigma)
        self.classifier.to(policy.device)
        # a transformer that checkpoints its own blocks (model.options.gradient_checkpointing) is not wrapped again
        self._block_checkpointing = bool(getattr(policy.transformer, "is_gradient_checkpointing", False))

    def param_groups(self, policy, params: list, lr: float) -> list[dict]:
        emb = get_condition(policy.transformer).weight
        rest = [p for p in params if p is not emb]
        return [{"params": rest, "lr": lr}, {"params": [emb], "lr": self.config.embed_lr}]

    # ---- rollout: labels and noise only --------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, policy, prompts, groups, ctx: StepContext) -> Batch:
        from genrl.rollout import make_noise, policy_sigmas

        s = self.sample_cfg
        n = len(prompts)
        y = torch.multinomial(self.label_probs, n, replacement=True, generator=ctx.generator)
        noise = make_noise(policy, n, groups, self.rollout_spec(), ctx, s.resolution)
        fields = dict(prompts=list(prompts), group=groups.clone(), cond=policy.encode(list(prompts)), noise=noise,
                      labels=y, rewards=torch.zeros(n), sigmas=policy_sigmas(policy, s.steps, s.shift, s.resolution))
        if s.cfg_scale != 1.0:
            fields["uncond"] = policy.encode([""] * n)
        return Batch(**fields)

    # ---- the differentiable rollout and the loss -----------------------------------------------------------
    def _models(self, policy, mb: Batch, ctx: StepContext):
        from genrl.rollout import velocity_fn

        scale = self.sample_cfg.cfg_scale
        dev = ctx.device
        y = mb.labels.to(dev)
        cond = {**{k: v.to(dev) for k, v in mb.cond.items()}, "condition": y}
        uncond = base_uncond = None
        if mb.get("uncond") is not None:
            base_uncond = {k: v.to(dev) for k, v in mb.uncond.items()}
            uncond = {**base_uncond, "condition": torch.full_like(y, get_condition(policy.transformer).null_id)}
        base_cond = {k: v for k, v in cond.items() if k != "condition"}
        tuned_fn = velocity_fn(policy, cond, uncond, scale, ctx)
        base_fn = velocity_fn(policy, base_cond, base_uncond, scale, ctx)

        def tuned(x, t):
            return tuned_fn(x, t)

        def base(x, t):
            with policy.disable_adapter():
                return base_fn(x, t)

        return tuned, base

    def _call(self, fn, x: torch.Tensor, t: torch.Tensor, grad: bool) -> torch.Tensor:
        if not grad:
            with torch.no_grad():
                return fn(x, t)
        if self.config.gradient_checkpointing and not self._block_checkpointing:
            return checkpoint(fn, x, t, use_reentrant=False)
        return fn(x, t)

    def differentiable_rollout(self, policy, mb: Batch, ctx: StepContext, schedule: list[bool] | None = None):
        """(x0, kl_sum [B], schedule): the reparameterised stochastic rollout of the fine-tuned model with the
        per-step KL to the base; `schedule[i]` says whether step i's model outputs carry gradient."""
        s = self.sample_cfg
        sig = mb.sigmas.float()
        n_steps = sig.numel() - 1
        if schedule is None:
            schedule = detach_schedule(n_steps, *self.trunc, ctx.rng) if self.config.truncated_backprop else \
                [True] * n_steps
        tuned, base = self._models(policy, mb, ctx)
        x = mb.noise.to(ctx.device, torch.float32)
        kl_sum = torch.zeros(x.shape[0], device=ctx.device)
        for i in range(n_steps):
            t, t_next = sig[i].to(ctx.device), sig[i + 1].to(ctx.device)
            g = schedule[i] and torch.is_grad_enabled()
            gated = float(t) < get_condition(policy.transformer).min_sigma  # this step IS the base: KL 0
            v_pre = self._call(base, x, t, g and (self.config.grad_through_base or gated))
            if gated:
                v_theta = v_pre
            else:
                v_theta = self._call(tuned, x, t, g)
                if not (g and self.config.grad_through_base):
                    v_pre = v_pre.detach()
            mean, std = samplers.sde_mean_std(v_theta, x, t, t_next, kind=s.method, noise_level=s.noise_level)
            mean_pre, _ = samplers.sde_mean_std(v_pre, x, t, t_next, kind=s.method, noise_level=s.noise_level)
            kl_sum = kl_sum + step_kl(mean, mean_pre, std.expand(x.shape[0], *std.shape[1:]))
            z = torch.randn(x.shape, generator=ctx.generator, device=ctx.generator.device).to(ctx.device)
            x = mean + std * z
        return x, kl_sum, schedule

    def loss(self, policy, mb: Batch, ctx: StepContext):
        cfg = self.config
        x0, kl_sum, schedule = self.differentiable_rollout(policy, mb, ctx)
        images = policy.decode(x0)
        logp = self.classifier.log_probs(images.float())
        y = self.clf_index.to(logp.device)[mb.labels.to(logp.device)]
        log_p_y = logp.gather(1, y[:, None])[:, 0]
        loss, metrics = ctrl_loss(log_p_y, kl_sum, cfg.loss_coeff, cfg.kl_weight)
        metrics["clf_acc"] = (logp.argmax(1) == y).float().mean().item()
        metrics["grad_steps"] = float(sum(schedule))
        return loss, metrics

    # ---- evaluation: each prompt with a label drawn from its seed, scored by the configured rewards -------
    @torch.no_grad()
    def eval_outputs(self, policy, prompts, seeds, metadata, ev, ctx: StepContext) -> Batch:
        """The deterministic eval ODE (ev.method, ev.steps) from per-prompt fixed noise with label
        labels[random.Random(seed).randrange(n_labels)] for the prompt with that seed: balanced in expectation and
        independent of the prompt order (alternating labels over an ordered
        prompt list pair each label with the same kinds of prompt, which biased the prompt accuracy by up to 0.08 on
        the shapes demo); CFG negative "" with the NULL label. The returned
        metadata carries {"condition": label} for rewards such as shapes_size / classifier."""
        from genrl.rollout import policy_sigmas, velocity_fn

        s = self.sample_cfg
        scale = s.cfg_scale if ev.cfg_scale is None else ev.cfg_scale
        names = [self.labels[random.Random(int(sd)).randrange(len(self.labels))] for sd in seeds]
        shape = tuple(policy.noise_shape(len(prompts), s.resolution))
        noise = torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(sd)) for sd in seeds])
        cond = {**policy.encode(list(prompts)), "condition": label_ids(policy.transformer, names)}
        uncond = None
        if scale != 1.0:
            uncond = {**policy.encode([""] * len(prompts)), "condition": label_ids(policy.transformer,
                                                                                    [None] * len(prompts))}
        sigmas = policy_sigmas(policy, ev.steps, s.shift, s.resolution)
        base_cond = {k: v for k, v in cond.items() if k != "condition"}
        base_unc = None if uncond is None else {k: v for k, v in uncond.items() if k != "condition"}
        fn = gated_velocity(policy, velocity_fn(policy, cond, uncond, scale, ctx),
                            velocity_fn(policy, base_cond, base_unc, scale, ctx))
        res = samplers.sample(fn, noise.to(ctx.device), sigmas, method=ev.method)
        meta = [{**(m or {}), "condition": name} for m, name in zip(metadata or [None] * len(prompts), names)]
        return Batch(prompts=list(prompts), outputs=policy.decode(res.samples).float().clamp(0, 1).cpu(),
                     metadata=meta)
