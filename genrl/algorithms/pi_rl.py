"""pi_RL (Chen et al. 2025, RLinf): online RL for flow-matching action policies, Flow-Noise or Flow-SDE, PPO or GRPO.

Time convention: t = 1 noise, t = 0 action, grid t_k = 1 - k / K (samplers/action_steps.py has the step math).

One training step = `sample.group_size * sample.groups_per_step` environment episodes (one Batch element each;
the "prompts" are initial-state ids, `data.prompts: episodes:N`; a GRPO group = episodes from the same initial
state). The rollout (genrl/worlds/episodes.py) runs them batched (`sample.batch_size` envs at a time) and stores
per env step (= one policy call, `action_chunk` executed actions) the observation and the denoising chain:
  noise_method = flow_noise   one-layer MDP: every denoising step stochastic (noise net std in [0.08, 0.16]);
                              log pi = mean of the K + 1 per-element terms (prior + K steps), all recomputed.
  noise_method = flow_sde     two-layer MDP: one step k* per policy call (shared by the batch) is a Flow-SDE step
                              (a = noise_level); only (x_{k*}, x_{k*+1}) is stored and its density recomputed.
Log-probs are summed over the executed actions and env dims (chunk level). Evaluation is ODE only.

Objectives (RLinf losses):
  ratio r = exp(logp - logp_old);  L_pi = mean_steps max(-A r, -A clip(r, 1 - eps_lo, 1 + eps_hi)), then the dual
  clip min(L, c |A|) where A < 0 (c = 3);
  loss = ppo:  critic = value head on action-expert features (mean over steps; k* only for Flow-SDE);
               A = GAE at chunk level (gamma 0.99, lambda 0.95; the episode's last step is terminal, as
               RLinf's dones = terminated | truncated; bootstrap_truncated=true bootstraps from V(s_T)),
               normalised over the step's valid env steps (all ranks);
               L_V = mean max(Huber_10(R - V), Huber_10(R - V_clip)), V_clip = V_old + clamp(V - V_old, +-0.2);
               total = L_pi + value_coef L_V - entropy_coef H (H: Flow-Noise Gaussian entropy per element).
  loss = grpo: no critic; episode score = return (sparse success reward: 1 at success); A = (score - group mean) /
               (group std + eps) from the loop's group advantages (`advantage:`), broadcast to every env step;
               zero-std groups filtered (for 0/1 scores and G <= 9 this equals RLinf's keep-if-mean-in-[0.1, 0.9]).
Faulty episodes (env raised / returned NaN) get reward NaN: the loop drops their group and counts it
(train/nonfinite_groups); train/reward_fault is the per-episode fault rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from genrl.algorithms.base import Algorithm, AlgorithmConfig, Batch, StepContext, register_algorithm

NOISE_METHODS = ("flow_noise", "flow_sde")


@dataclass
class PiRLConfig(AlgorithmConfig):
    name: str = "pi_rl"
    noise_method: str = "flow_sde"  # flow_noise | flow_sde
    loss: str = "ppo"  # ppo (critic + GAE) | grpo (group-relative, no critic)
    env: str = "robot2d"  # environment id (genrl.worlds.envs: robot2d, metaworld/reach-v3, ...)
    env_options: dict = field(default_factory=dict)  # e.g. {max_steps: 150}
    noise_level: float = 0.5  # Flow-SDE a (RLinf: 0.5)
    ignore_last: bool = True  # Flow-SDE: never pick the last denoising step as k*
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float = 3.0  # clip_ratio_c; 0 disables
    value_clip: float = 0.2
    huber_delta: float = 10.0
    value_coef: float = 1.0
    entropy_coef: float = 0.0  # RLinf: Flow-Noise 0.005, Flow-SDE 0
    value_lr: float = 1e-4  # the value head's own learning rate (the rest uses train.lr)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    bootstrap_truncated: bool = False  # RLinf: done = terminated or truncated (no bootstrap at the time limit);
    # True bootstraps truncated episodes from V(s_T) (that state is never a value target: can drift upward)
    eval_frames: bool = True  # record frames in evaluation (GIF in samples/)


def init_seed(prompt: str) -> int:
    """'init 17' -> 17 (initial-state ids from `episodes:N` prompt sources)."""
    try:
        return int(str(prompt).rsplit(" ", 1)[-1])
    except ValueError:
        raise ValueError(f"robot rollouts need initial-state prompts like 'init 17' (data.prompts: episodes:N), "
                         f"got {prompt!r}") from None


def gae(reward: torch.Tensor, value: torch.Tensor, terminal: torch.Tensor, mask: torch.Tensor,
        last_value: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-level GAE over [N, T] (valid steps are a prefix of each row, `mask`). A step's successor value is the
    next valid step's value, else `last_value` (bootstrap of a truncated episode); a terminal step has none.
    Returns (advantages, returns = advantages + values), zero on invalid steps."""
    n, t_len = reward.shape
    adv = torch.zeros(n, t_len)
    next_adv, next_v = torch.zeros(n), last_value.float().clone()
    m = mask.float()
    for j in reversed(range(t_len)):
        nonterm = 1.0 - terminal[:, j].float()
        delta = reward[:, j] + gamma * next_v * nonterm - value[:, j]
        a = delta + gamma * lam * nonterm * next_adv
        adv[:, j] = a * m[:, j]
        valid = mask[:, j]
        next_adv = torch.where(valid, a, next_adv)
        next_v = torch.where(valid, value[:, j], next_v)
    return adv, (adv + value) * m


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    a = x.abs()
    return torch.where(a <= delta, 0.5 * x**2, delta * (a - 0.5 * delta))


@register_algorithm("pi_rl")
class PiRL(Algorithm):
    Config = PiRLConfig

    def __init__(self, config: PiRLConfig, sample_cfg, advantage_cfg):
        super().__init__(config, sample_cfg, advantage_cfg)
        c = config
        if c.noise_method not in NOISE_METHODS:
            raise ValueError(f"algorithm.noise_method must be flow_noise or flow_sde, got {c.noise_method!r}")
        if c.loss not in ("ppo", "grpo"):
            raise ValueError(f"algorithm.loss must be ppo or grpo, got {c.loss!r}")
        if c.loss == "ppo" and advantage_cfg.filter_zero_std:
            raise ValueError("algorithm.loss=ppo trains on every episode: set advantage.filter_zero_std=false")
        from genrl.worlds.envs import available, make_env

        if c.env not in available() and not c.env.startswith("metaworld/"):
            make_env(c.env, 1, **c.env_options)  # raises the one-line unknown-id error
        self._envs: dict[int, object] = {}

    # ---- environment ----------------------------------------------------------------------------------------------
    def env(self, n: int):
        if n not in self._envs:
            from genrl.worlds.envs import make_env

            self._envs[n] = make_env(self.config.env, n, **self.config.env_options)
        return self._envs[n]

    def setup(self, policy, ctx: StepContext) -> None:
        env = self.env(1)
        pc = policy.config
        if env.obs_dim != pc.obs_dim or env.action_dim != pc.action_dim:
            raise ValueError(f"algorithm.env {self.config.env!r} has obs/action dims ({env.obs_dim}, {env.action_dim}) "
                             f"but the policy expects ({pc.obs_dim}, {pc.action_dim}); use a policy for this env")

    def param_groups(self, policy, params: list, lr: float) -> list[dict]:
        value_ids = {id(p) for p in policy.value_head.parameters()}
        rest = [p for p in params if id(p) not in value_ids]
        vals = [p for p in params if id(p) in value_ids]
        groups = [{"params": rest}]
        if vals and self.config.loss == "ppo":
            groups.append({"params": vals, "lr": self.config.value_lr})
        return groups

    # ---- rollout --------------------------------------------------------------------------------------------------
    def rollout(self, policy, prompts: list[str], groups: torch.Tensor, ctx: StepContext) -> Batch:
        from genrl.worlds.episodes import run_episodes

        c = self.config
        seeds = [init_seed(p) for p in prompts]
        ep = run_episodes(policy, self.env(len(prompts)), seeds, c.noise_method, ctx.generator,
                          noise_level=c.noise_level, ignore_last=c.ignore_last,
                          bootstrap=c.loss == "ppo" and c.bootstrap_truncated)
        rewards = ep["ret"].clone()
        rewards[ep["fault"]] = float("nan")
        adv, ret = gae(ep["reward"], ep["value"], ep["terminal"], ep["mask"], ep["last_value"], c.gamma,
                       c.gae_lambda)
        fields = {k: ep[k] for k in ("obs", "chain", "kstar", "logp", "value", "mask") if k in ep}
        if "images" in ep:  # camera frames per env step (pi0 backbone); `images` is the loop's image-flow field
            fields["camera"] = ep["images"]
        details = {"success": ep["success"].float(), "return": ep["ret"], "length": ep["length"].float(),
                   "fault": ep["fault"].float()}
        return Batch(prompts=list(prompts), group=groups, rewards=rewards, gae_adv=adv, returns=ret,
                     details=details, **fields)

    @torch.no_grad()
    def eval_outputs(self, policy, prompts, seeds, metadata, ev, ctx) -> Batch:
        """ODE episodes from the prompts' initial states; rewards = success; outputs = frame clips (GIF)."""
        from genrl.worlds.episodes import run_episodes

        init = [int(m["init_seed"]) for m in metadata] if metadata else [init_seed(p) for p in prompts]
        gen = torch.Generator().manual_seed(int(seeds[0]) % (2**63))
        ep = run_episodes(policy, self.env(len(prompts)), init, "ode", gen, frames=self.config.eval_frames)
        outputs = ep.get("frames") or [torch.zeros(1, 8, 8, 3, dtype=torch.uint8)] * len(prompts)
        return Batch(prompts=list(prompts), outputs=outputs, rewards=ep["success"].float(),
                     details={"return": ep["ret"], "length": ep["length"].float(), "fault": ep["fault"].float()})

    # ---- advantages -----------------------------------------------------------------------------------------------
    def advantages(self, rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "ppo":
            return torch.zeros_like(rewards.float())  # per-step GAE instead (prepare_update)
        return super().advantages(rewards, groups)

    def prepare_update(self, batch: Batch, gather) -> dict:
        """Per-step advantages `step_adv` [B, T]: normalised GAE (PPO) or the episode's group advantage (GRPO)."""
        mask = batch.mask
        if self.config.loss == "grpo":
            batch.step_adv = batch.advantages.float()[:, None] * mask.float()
            return {}
        a = batch.gae_adv
        if self.config.normalize_advantages:
            stats = gather(torch.stack([(a * mask).sum(), (a**2 * mask).sum(), mask.float().sum()])[None])
            s, s2, cnt = stats.reshape(-1, 3).sum(0).tolist()
            mean = s / max(cnt, 1.0)
            std = math.sqrt(max(s2 / max(cnt, 1.0) - mean**2, 0.0))
            a = (a - mean) / (std + 1e-6)
        batch.step_adv = a * mask.float()
        v = batch.value[mask]
        # the advantages PPO trains on are these, not the loop's (zero) group ones: what the idle check reads
        adv_abs = float(batch.step_adv[mask].abs().mean()) if mask.any() else 0.0
        return {"train/value_mean": float(v.mean()) if v.numel() else 0.0, "train/adv_abs_mean": adv_abs}

    # ---- loss -----------------------------------------------------------------------------------------------------
    def losses(self, policy, mb: Batch, ctx: StepContext):
        from genrl.worlds.episodes import chain_log_prob

        c = self.config
        flat = mb.mask.reshape(-1)
        rows = torch.nonzero(flat).reshape(-1)
        params = [p for p in policy.parameters() if p.requires_grad]
        if rows.numel() == 0:
            yield sum(p.sum() * 0.0 for p in params), {}
            return
        dev = ctx.device

        def pick(x):
            return x.reshape(-1, *x.shape[2:])[rows].to(dev)

        images = pick(mb.camera) if mb.get("camera") is not None else None
        with ctx.amp():
            cond = policy.encode(pick(mb.obs), images)
            res = chain_log_prob(policy, cond, pick(mb.chain), pick(mb.kstar), c.noise_method, c.noise_level)
        old, adv = pick(mb.logp).float(), pick(mb.step_adv).float()
        log_ratio = (res["logp"].float() - old).clamp(-20.0, 20.0)
        ratio = torch.exp(log_ratio)
        pg1 = -adv * ratio
        pg2 = -adv * ratio.clamp(1.0 - c.clip_low, 1.0 + c.clip_high)
        pg = torch.maximum(pg1, pg2)
        if c.dual_clip > 0:
            pg = torch.where(adv < 0, torch.minimum(pg, c.dual_clip * adv.abs()), pg)
        loss_pi = pg.mean()
        loss = loss_pi
        with torch.no_grad():
            metrics = {"loss_policy": float(loss_pi), "ratio_mean": float(ratio.mean()),
                       "clip_frac": float(((ratio - 1).abs() > c.clip_low).float().mean()),
                       "approx_kl": float((0.5 * log_ratio**2).mean())}
        if c.loss == "ppo":
            v, v_old, ret = res["value"].float(), pick(mb.value).float(), pick(mb.returns).float()
            v_clip = v_old + (v - v_old).clamp(-c.value_clip, c.value_clip)
            loss_v = torch.maximum(huber(ret - v, c.huber_delta), huber(ret - v_clip, c.huber_delta)).mean()
            loss = loss + c.value_coef * loss_v
            metrics["loss_value"] = loss_v.item()
        if c.noise_method == "flow_noise":
            ent = res["entropy"].mean()
            loss = loss - c.entropy_coef * ent
            metrics["entropy"] = ent.item()
        yield loss, metrics
