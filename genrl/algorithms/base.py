"""The Algorithm interface: what every RL method plugs into the one loop (genrl/loop.py).

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps,
velocity v = eps - x0. Log-probs are per-element MEANS (shape [B]) unless a method says otherwise.

One training step of the loop (a "step" = one rollout + update round, `train.steps` counts these):

    prompts (K-repeat groups; this rank's share)             genrl.data
    batch = algo.rollout(policy, prompts, ctx)               default: samplers.sample with algo.rollout_spec()
    batch.rewards = reward(outputs, prompts, metadata)       `outputs` (or `images`); skipped if the rollout set rewards
    batch.advantages = algo.advantages(gathered rewards)     default: per-prompt group normalisation
    for each micro-batch mb (train.batch_size samples):
        for loss, metrics in algo.losses(policy, mb, ctx):   one backward per yielded term
            backward(loss / micro_batches_per_update)
        every micro_batches_per_update: clip, optimizer step, ema, algo.after_optimizer_step(policy, ctx)
    algo.after_step(policy, ctx)                              e.g. NFT old-policy / AWM EMA-policy soft update
    evaluation: algo.eval_outputs(policy, prompts, fixed seeds, ...) -> reward -> policy.save_samples (grid)

A new method is ONE file `genrl/algorithms/<name>.py` that subclasses `Algorithm`, defines its config
dataclass (subclass of `AlgorithmConfig`, fields = YAML keys under `algorithm:`), and registers itself:

    @register_algorithm("nft")
    class NFT(Algorithm):
        Config = NFTConfig
        def rollout_spec(self): return RolloutSpec(record="final", method=self.sample_cfg.method, ...)
        def losses(self, policy, mb, ctx): ...

and adds one line to `genrl/algorithms/__init__.py:_MODULES`. Methods whose rollout is not an image flow
(diffusion LLMs with ELBO Monte-Carlo samples, robot policies acting in an environment) override
`rollout()` and may set `batch.rewards` themselves; everything else in the loop stays the same.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from genrl.advantages import group_advantages
from samplers import flow_sigmas


@dataclass
class AlgorithmConfig:
    """Base of every algorithm's config section (`algorithm:` in YAML). `name` selects the registered class."""

    name: str = "grpo"


@dataclass
class RolloutSpec:
    """What the algorithm needs from the sampler.

    record: "trajectory" (all x_t, per-step log-probs, SDE mask; Flow-GRPO) or "final" (clean samples only;
    DiffusionNFT, AWM). method / noise_level / sde_window are passed to `samplers.sample`. cfg_scale > 1 runs
    classifier-free guidance with the empty-prompt embedding as the negative (one concatenated forward).
    """

    method: str = "euler"
    noise_level: float = 0.0
    sde_window: tuple[int, int] | None = None
    record: str = "final"
    cfg_scale: float = 1.0
    steps: int = 10
    shift: float = 1.0
    same_noise: bool = False  # all samples of a prompt group start from the same noise


class Batch:
    """Named batch-first fields of a rollout. Tensors are indexed along dim 0; lists are indexed per element;
    anything else (sigmas, sde_steps, the window) is shared by the whole batch and copied as is.

    Fields named in Batch.SHARED or declared with `shared=`/`mark_shared` are never split.

    Common fields set by the default rollout: prompts (list[str]), group (long [B], prompt-group id),
    metadata (list[dict] | None), cond / uncond (dicts of tensors), samples (final latents), images
    ([B,3,H,W] in [0,1]), and with record="trajectory": latents [B, T+1, ...], log_probs [B, T],
    sigmas [T+1], sde_steps bool [T]. The loop adds rewards [B] and advantages [B].
    """

    #: fields that are always shared by the whole batch (never split), whatever their length
    SHARED = frozenset({"sigmas", "sde_steps", "sde_window", "timesteps"})

    def __init__(self, shared: tuple[str, ...] | set[str] = (), **fields: Any):
        self.__dict__["_f"] = dict(fields)
        self.__dict__["_shared"] = set(self.SHARED) | set(shared)

    def mark_shared(self, *names: str) -> None:
        """Declare extra fields shared by the whole batch (not indexed by `select`, not concatenated)."""
        self._shared.update(names)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_f"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._f[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self._f

    def get(self, name: str, default: Any = None) -> Any:
        return self._f.get(name, default)

    def keys(self):
        return self._f.keys()

    def __len__(self) -> int:
        return len(self._f["prompts"])

    def select(self, idx: torch.Tensor | list[int]) -> Batch:
        """The sub-batch at integer positions `idx` (per-sample fields only; shared fields copied)."""
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        idx_l = idx_t.tolist()
        n = len(self)
        out = {k: v if k in self._shared else _take(v, idx_t, idx_l, n) for k, v in self._f.items()}
        return Batch(shared=self._shared, **out)

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        """Concatenate batches with the same fields along the batch dimension."""
        first = batches[0]
        n = len(first)
        out = {}
        for k in first._f:
            vals = [b._f[k] for b in batches]
            if k in first._shared:
                for v in vals[1:]:
                    if isinstance(v, torch.Tensor) and not (v.shape == vals[0].shape and torch.equal(v, vals[0])):
                        raise ValueError(f"Batch.cat: shared field {k!r} differs between batches; it must be "
                                         "identical (or not declared shared)")
                out[k] = vals[0]
            else:
                out[k] = _cat(vals, n)
        return Batch(shared=first._shared, **out)


def _is_per_sample(v: Any, n: int) -> bool:
    if isinstance(v, torch.Tensor):
        return v.ndim > 0 and v.shape[0] == n
    if isinstance(v, list):
        return len(v) == n
    if isinstance(v, dict):
        return bool(v) and all(_is_per_sample(x, n) for x in v.values())
    return False


def _take(v: Any, idx_t: torch.Tensor, idx_l: list[int], n: int) -> Any:
    if not _is_per_sample(v, n):
        return v
    if isinstance(v, torch.Tensor):
        return v[idx_t.to(v.device)]
    if isinstance(v, list):
        return [v[i] for i in idx_l]
    return {k: _take(x, idx_t, idx_l, n) for k, x in v.items()}


def _cat(vals: list[Any], n: int) -> Any:
    v0 = vals[0]
    if v0 is None or not _is_per_sample(v0, n):
        return v0
    if isinstance(v0, torch.Tensor):
        return torch.cat(vals)
    if isinstance(v0, list):
        return sum((list(v) for v in vals), [])
    return {k: _cat([v[k] for v in vals], n) for k in v0}


@dataclass
class StepContext:
    """What the loop hands to algorithm hooks. `generator` is seeded from (run.seed, step, rank) so any fresh
    randomness an algorithm draws (NFT/AWM re-noising, timestep choice) is reproducible and resume-exact."""

    step: int  # current training step (0-based; the round being run)
    update: int  # optimizer updates done so far
    generator: torch.Generator
    rng: random.Random
    device: torch.device
    num_processes: int = 1
    process_index: int = 0
    autocast: Any = None  # a context-manager factory (accelerator.autocast); None -> no autocast
    seed: int = 0  # run.seed (for per-group noise and other derived seeds)
    epoch: int = 0  # which pass over the step's samples is running (0 .. epochs - 1; train.inner_epochs passes)
    epochs: int = 1  # train.inner_epochs: how many passes the step's samples get (known at rollout time too)
    extra: dict = field(default_factory=dict)
    inference_mode: bool = True  # no_autograd(): False -> torch.no_grad (sharded model, GENRL_INFERENCE_MODE=0)

    def amp(self):
        import contextlib

        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    def no_autograd(self):
        """For forwards whose outputs never need a gradient (rollouts, evaluation, reference / old / EMA targets):
        torch.inference_mode, torch.no_grad's values with less host work per op (no version counters or view
        tracking; 1.03x per tiny-SD3 step, 1.00x on the demo). torch.no_grad when `inference_mode` is False, which
        the loop sets for an FSDP-sharded model (FSDP2 writes the parameters it gathers in place after the
        forward, which inference mode forbids) and for GENRL_INFERENCE_MODE=0. Outputs made under inference mode
        may be used in out-of-place math, not modified in place or saved for a backward."""
        return torch.inference_mode() if self.inference_mode else torch.no_grad()


class Algorithm:
    """Base class of an RL method. Subclasses set `Config` and implement `losses` (or `loss`).

    Constructed as `Algo(config, sample_cfg, advantage_cfg)`; `config` is the algorithm's own dataclass,
    `sample_cfg` the `sample:` section (sampler method, steps, noise level, CFG, window), `advantage_cfg`
    the `advantage:` section.
    """

    Config: type[AlgorithmConfig] = AlgorithmConfig
    name: str = "base"
    #: the policy contract the method drives (policy.kind): "flow" (FlowPolicy) or "masked_lm" (MaskedLMPolicy)
    policy_kind: str = "flow"
    #: whether the loss learns from advantages; if it does, a step whose advantages are all 0 (the loop's
    #: train/adv_abs_mean, which `prepare_update` may replace with the advantages it really trains on, e.g. GAE)
    #: counts as idle (run.max_idle_steps). A method whose reward is inside its loss (CTRL) sets False.
    learns_from_advantages: bool = True

    def __init__(self, config: AlgorithmConfig, sample_cfg: Any, advantage_cfg: Any):
        self.config = config
        self.sample_cfg = sample_cfg
        self.advantage_cfg = advantage_cfg

    def stage_advantages(self, adv: torch.Tensor, t) -> torch.Tensor:
        """The advantages that train timestep t: adv itself [N], or with hierarchical stages (adv [N, S],
        advantage.stages) each sample's column of the stage covering its t (genrl/hierarchy.py)."""
        from genrl.hierarchy import stage_advantages

        stages = getattr(self.advantage_cfg, "stages", None) or []
        return stage_advantages(adv, t, [float(st["t_min"]) for st in stages])

    def check_inputs(self, policy, prompt_sets: dict[str, list[str]]) -> None:
        """Validate the loaded policy and the prompt sets ({config key: prompts}) before anything is written;
        one-line ValueErrors naming the fix. Default: the policy implements the contract this method drives."""
        kind = getattr(policy, "kind", "flow")
        if kind != self.policy_kind:
            what = {"flow": "a flow model (images, video, 3D, actions)", "masked_lm": "a masked diffusion LM"}
            raise ValueError(f"algorithm.name={self.name!r} trains {what.get(self.policy_kind, self.policy_kind)} but "
                             f"model.path is {what.get(kind, kind)}; pick a matching algorithm "
                             f"({'grpo, nft, awm' if kind == 'flow' else 'bgpo, diffu_grpo, elbo_grpo'}) or model")

    # ---- rollout -------------------------------------------------------------------------------------------
    def rollout_spec(self) -> RolloutSpec:
        """Default: clean final samples with the configured sampler (no trajectory)."""
        s = self.sample_cfg
        return RolloutSpec(
            method=s.method, noise_level=s.noise_level, sde_window=None, record="final",
            cfg_scale=s.cfg_scale, steps=s.steps, shift=s.shift, same_noise=s.same_noise,
        )

    def rollout(self, policy, prompts: list[str], groups: torch.Tensor, ctx: StepContext) -> Batch:
        """Generate one rollout batch for `prompts` (group ids `groups`). Default: the image-flow rollout
        (genrl.rollout.flow_rollout) with `rollout_spec()`. Override for non-image-flow methods."""
        from genrl.rollout import flow_rollout

        return flow_rollout(policy, prompts, groups, self.rollout_spec(), ctx, resolution=self.sample_cfg.resolution)

    @torch.no_grad()
    def eval_outputs(self, policy, prompts: list[str], seeds: list[int], metadata: list[dict] | None, ev: Any,
                     ctx: StepContext) -> Batch:
        """Deterministic outputs for evaluation: the same `seeds` (one per prompt, fixed across evaluations) give
        the same outputs for the same weights. Returns a Batch with `outputs` (what the reward scores; the sample
        grid shows them via `policy.save_samples`) and, when the outputs score themselves (e.g. environment
        episodes), `rewards` [B] and optional `details` {name: [B]}. `ev` is the `eval:` config section.
        Default: image flows, the deterministic `ev.method` ODE from per-prompt fixed noise, CFG `ev.cfg_scale`."""
        import samplers
        from genrl.rollout import policy_sigmas, velocity_fn, without_autograd

        s = self.sample_cfg
        scale = s.cfg_scale if ev.cfg_scale is None else ev.cfg_scale
        shape = tuple(policy.noise_shape(len(prompts), s.resolution))
        noise = torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(sd)) for sd in seeds])
        cond = policy.encode(prompts)
        uncond = policy.encode([""] * len(prompts)) if scale != 1.0 else None
        sigmas = policy_sigmas(policy, ev.steps, s.shift, s.resolution)
        vfn = without_autograd(velocity_fn(policy, cond, uncond, scale, ctx), ctx)
        res = samplers.sample(vfn, noise.to(ctx.device), sigmas, method=ev.method)
        return Batch(prompts=list(prompts), outputs=policy.decode(res.samples).float().clamp(0, 1).cpu())

    def rollout_grid(self, mb: Batch) -> torch.Tensor:
        """The sigma grid the rollout used (stored in the batch; adapters may define their own, e.g. FLUX's
        dynamic shift), else samplers.flow_sigmas(sample.steps, sample.shift)."""
        sig = mb.get("sigmas")
        if isinstance(sig, torch.Tensor) and sig.ndim == 1 and sig.numel() == self.sample_cfg.steps + 1:
            return sig.float().cpu()
        return flow_sigmas(self.sample_cfg.steps, self.sample_cfg.shift)

    # ---- advantages ----------------------------------------------------------------------------------------
    def advantages(self, rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Advantages from the GATHERED rewards of the whole step (all ranks). Default: per-prompt group
        normalisation with the `advantage:` options (global std, clip)."""
        a = self.advantage_cfg
        return group_advantages(rewards, groups, global_std=a.global_std, clip=a.clip_max, eps=a.eps)

    # ---- training ------------------------------------------------------------------------------------------
    def loss(self, policy, mb: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch and scalar metrics. Implement this OR `losses`."""
        raise NotImplementedError

    def losses(self, policy, mb: Batch, ctx: StepContext) -> Iterator[tuple[torch.Tensor, dict[str, float]]]:
        """Yield (loss, metrics) terms of one micro-batch; the loop back-propagates each term as soon as it is
        yielded (so e.g. Flow-GRPO frees each timestep's graph before the next). Each term must already be
        scaled so that their SUM is the micro-batch loss. Default: the single term `loss()`."""
        yield self.loss(policy, mb, ctx)

    # ---- hooks ---------------------------------------------------------------------------------------------
    def configure_policy(self, policy) -> None:
        """Called once right after the model is loaded, BEFORE the optimizer is built and a checkpoint restored:
        add trainable modules here (e.g. CTRL's condition embedding)."""

    def param_groups(self, policy, params: list, lr: float) -> list[dict]:
        """Optimizer parameter groups over `params` (policy.trainable_parameters()). Default: one group at
        train.lr. A method may give groups their own lr (CTRL: LoRA and condition embedding; PPO: the critic)."""
        return [{"params": params, "lr": lr}]

    def setup(self, policy, ctx: StepContext) -> None:
        """Called once before training (after resume state is loaded), e.g. to create an old-policy copy."""

    def after_optimizer_step(self, policy, ctx: StepContext) -> None:
        """Called after every optimizer update."""

    def after_step(self, policy, ctx: StepContext) -> None:
        """Called after all updates of a step (the reference repos' "epoch")."""

    def prepare_update(self, batch: Batch, gather) -> dict[str, float]:
        """Called once per step after `batch.advantages` is set, with this rank's whole step batch, before the
        updates (e.g. normalise per-step GAE advantages over all ranks). `gather(t)` concatenates a tensor over
        ranks. Returns metrics to log. Default: nothing."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


_REGISTRY: dict[str, type[Algorithm]] = {}


def register_algorithm(name: str):
    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def config_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
