"""Batched environment episodes with a flow action policy, and the denoising chains pi_RL trains on.

Time convention: t = 1 noise, t = 0 action; grid t_k = 1 - k / K. Per policy call (one env "chunk" step):
x_1 ~ N(0, I) -> K steps -> the clean chunk [H, D]; its first `action_chunk` actions are executed.
Modes (samplers.action_steps):
  "ode"          every step deterministic (evaluation).
  "flow_noise"   every step stochastic with the noise net's std; log-prob = MEAN over the K + 1 terms (prior
                 N(x_1; 0, I) plus K transitions) of the per-element log-densities; the whole chain is stored.
  "flow_sde"     one step index k* ~ U{0..K-1} (U{0..K-2} with ignore_last) per call, SHARED by the batch, uses
                 the Flow-SDE step; only its transition (x_{k*}, x_{k*+1}) and log-density are stored.
Log-probs count only the executed actions and the env's action dims and are SUMMED over them ("chunk level":
one scalar per env step). Values: the critic on each step's features, averaged over the K steps.
Chunk-level rewards: env rewards of the executed actions summed; terminal = terminated within the chunk.
Faults: an env step that raises, or returns a non-finite obs/reward (or info["fault"]), drops that episode:
fault[i] = 1, its mask is cleared and its reward set to NaN by the caller.
"""

from __future__ import annotations

import math

import torch

from samplers.action_steps import action_grid, gaussian_entropy, gaussian_log_density, step_mean_std

MODES = ("ode", "flow_noise", "flow_sde")


def exec_mask(policy) -> torch.Tensor:
    """[H, D_model] float: 1 on the executed actions' real dims."""
    c = policy.config
    m = torch.zeros(c.horizon, policy.model_action_dim)
    m[: c.action_chunk, : c.action_dim] = 1.0
    return m


def step_kind(mode: str, k: int, kstar: int) -> str:
    if mode == "flow_noise":
        return "noise"
    if mode == "flow_sde" and k == kstar:
        return "sde"
    return "ode"


@torch.no_grad()
def act(policy, cond: dict, noise: torch.Tensor, mode: str, kstar: int, generator: torch.Generator,
        noise_level: float = 0.5) -> dict:
    """One policy call from initial noise [B, H, D]: chain [B, K+1, H, D], logp [B] (see module docstring),
    value [B] (mean over the K steps)."""
    k_steps = policy.config.steps
    grid = action_grid(k_steps)
    dev = noise.device
    mask = exec_mask(policy).to(dev)
    x = noise.float()
    chain, terms, values = [x], [], []
    if mode == "flow_noise":
        terms.append(gaussian_log_density(x, torch.zeros_like(x), torch.ones((), device=dev)))
    for k in range(k_steps):
        t, d = float(grid[k]), float(grid[k] - grid[k + 1])
        v, feat = policy.expert_forward(x, t, cond)
        values.append(policy.value(feat))
        kind = step_kind(mode, k, kstar)
        std = policy.noise_std(feat) if kind == "noise" else None
        mean, sd = step_mean_std(x, v, t, d, kind, noise_level, std)
        if kind == "ode":
            x = mean
        else:
            x = mean + sd * torch.randn(mean.shape, generator=generator).to(dev)
            terms.append(gaussian_log_density(x, mean, sd))
        chain.append(x)
    if terms:
        logp = (torch.stack(terms, 1).mean(1) * mask).sum((-2, -1))
    else:
        logp = torch.zeros(noise.shape[0], device=dev)
    return {"chain": torch.stack(chain, 1), "logp": logp, "value": torch.stack(values, 1).mean(1)}


def chain_log_prob(policy, cond: dict, chain: torch.Tensor, kstar: torch.Tensor, mode: str,
                   noise_level: float = 0.5) -> dict:
    """Recompute (with gradients) what `act` stored. flow_noise: chain [N, K+1, H, D] -> logp [N], value [N]
    (mean over the K steps), entropy [N] (mean per executed element over the K steps). flow_sde: chain
    [N, 2, H, D] = (x_{k*}, x_{k*+1}), kstar [N] -> logp [N], value [N] (at step k*), entropy 0."""
    k_steps = policy.config.steps
    grid = action_grid(k_steps)
    dev = chain.device
    mask = exec_mask(policy).to(dev)
    n_el = mask.sum()
    if mode == "flow_noise":
        x0 = chain[:, 0]
        terms = [gaussian_log_density(x0, torch.zeros_like(x0), torch.ones((), device=dev))]
        values, ents = [], []
        for k in range(k_steps):
            t, d = float(grid[k]), float(grid[k] - grid[k + 1])
            v, feat = policy.expert_forward(chain[:, k], t, cond)
            values.append(policy.value(feat))
            std = policy.noise_std(feat)
            mean, sd = step_mean_std(chain[:, k], v, t, d, "noise", noise_level, std)
            terms.append(gaussian_log_density(chain[:, k + 1], mean, sd))
            ents.append((gaussian_entropy(sd) * mask).sum((-2, -1)) / n_el)
        logp = (torch.stack(terms, 1).mean(1) * mask).sum((-2, -1))
        return {"logp": logp, "value": torch.stack(values, 1).mean(1), "entropy": torch.stack(ents, 1).mean(1)}
    if mode != "flow_sde":
        raise ValueError(f"chain_log_prob: mode must be flow_noise or flow_sde, got {mode!r}")
    n = chain.shape[0]
    logp = torch.zeros(n, device=dev)
    value = torch.zeros(n, device=dev)
    for k in torch.unique(kstar).tolist():
        rows = torch.nonzero(kstar == k).reshape(-1)
        t, d = float(grid[k]), float(grid[k] - grid[k + 1])
        sub = {key: val[rows] for key, val in cond.items()}
        v, feat = policy.expert_forward(chain[rows, 0], t, sub)
        mean, sd = step_mean_std(chain[rows, 0], v, t, d, "sde", noise_level)
        lp = (gaussian_log_density(chain[rows, 1], mean, sd) * mask).sum((-2, -1))
        logp = logp.index_put((rows,), lp)
        value = value.index_put((rows,), policy.value(feat))
    return {"logp": logp, "value": value, "entropy": torch.zeros(n, device=dev)}


@torch.no_grad()
def run_episodes(policy, env, seeds: list[int], mode: str, generator: torch.Generator, *, noise_level: float = 0.5,
                 ignore_last: bool = True, frames: bool = False, bootstrap: bool = False) -> dict:
    """Run len(seeds) episodes in `env` (a vector env with that many envs) until all end. Returns padded per-step
    tensors [N, T] (T = ceil(env.max_steps / action_chunk)) and per-episode summaries [N] (see module docstring):
    obs, images (pi0), chain, kstar, logp, value, reward, terminal, mask; success, ret, length, fault,
    last_value (critic at the final obs when bootstrap, for truncated episodes); frames: list of uint8 clips."""
    if mode not in MODES:
        raise ValueError(f"unknown rollout mode {mode!r}; use one of {', '.join(MODES)}")
    c = policy.config
    n, chunk, dev = len(seeds), c.action_chunk, policy.obs_mean.device
    if getattr(env, "obs_dim", c.obs_dim) != c.obs_dim or getattr(env, "action_dim", c.action_dim) != c.action_dim:
        raise ValueError(f"environment dims (obs {env.obs_dim}, action {env.action_dim}) do not match the policy "
                         f"(obs {c.obs_dim}, action {c.action_dim}); use a policy trained on this env")
    t_max = math.ceil(env.max_steps / chunk)
    obs, _ = env.reset(seed=list(seeds))
    obs = obs.float()
    alive = torch.ones(n, dtype=torch.bool)
    fault = torch.zeros(n, dtype=torch.bool)
    success = torch.zeros(n, dtype=torch.bool)
    ret, length = torch.zeros(n), torch.zeros(n, dtype=torch.long)
    rec: dict[str, list] = {k: [] for k in ("obs", "images", "chain", "kstar", "logp", "value", "reward",
                                            "terminal", "mask")}
    clips = [[f] for f in env.render()] if frames else None
    for _ in range(t_max):
        if not alive.any():
            break
        images = env.render() if policy.needs_images else None
        cond = policy.encode(obs, images)
        kmax = c.steps - 1 if (ignore_last and c.steps > 1) else c.steps
        kstar = int(torch.randint(0, kmax, (1,), generator=generator)) if mode == "flow_sde" else -1
        noise = torch.randn(policy.noise_shape(n), generator=generator).to(dev)
        out = act(policy, cond, noise, mode, kstar, generator, noise_level)
        actions = policy.decode(out["chain"][:, -1]).float().cpu()
        rec["obs"].append(obs.clone())
        if images is not None:
            rec["images"].append(images.clone())
        ch = out["chain"].cpu()
        rec["chain"].append(ch[:, kstar : kstar + 2] if mode == "flow_sde" else ch)
        rec["kstar"].append(torch.full((n,), max(kstar, 0), dtype=torch.long))
        rec["logp"].append(out["logp"].float().cpu())
        rec["value"].append(out["value"].float().cpu())
        rec["mask"].append(alive.clone())
        r = torch.zeros(n)
        term = torch.zeros(n, dtype=torch.bool)
        for i in range(chunk):
            was = alive.clone()
            if not was.any():
                break
            try:
                obs_new, rew, te, tr, info = env.step(actions[:, i])
                obs_new, rew = torch.as_tensor(obs_new).float(), torch.as_tensor(rew).float()
                bad = ~torch.isfinite(obs_new).all(1) | ~torch.isfinite(rew)
                if "fault" in info:
                    bad |= torch.as_tensor(info["fault"], dtype=torch.bool)
            except Exception:  # the vector env failed as a whole: every live episode of this batch is dropped
                fault |= alive
                alive[:] = False
                break
            bad &= was
            fault |= bad
            ok = was & ~bad
            gain = torch.where(ok, torch.nan_to_num(rew), torch.zeros_like(rew))
            r += gain
            ret += gain
            length += was.long()
            s = torch.as_tensor(info.get("success", torch.zeros(n, dtype=torch.bool)), dtype=torch.bool)
            success |= ok & s
            te = torch.as_tensor(te, dtype=torch.bool) & ok
            term |= te
            alive &= ~(te | torch.as_tensor(tr, dtype=torch.bool) | bad)
            obs = torch.where(ok[:, None], torch.nan_to_num(obs_new), obs)
            if frames:
                img = env.render()
                for e in range(n):
                    if was[e]:
                        clips[e].append(img[e])
        rec["reward"].append(r)
        rec["terminal"].append(term)
    last_value = torch.zeros(n)
    if bootstrap and (~fault).any():
        cond = policy.encode(obs, env.render() if policy.needs_images else None)
        noise = torch.randn(policy.noise_shape(n), generator=generator).to(dev)
        last_value = act(policy, cond, noise, "ode", -1, generator)["value"].float().cpu()
    out = {}
    for k, seq in rec.items():
        if not seq:
            continue
        x = torch.stack(seq, 1)
        if x.shape[1] < t_max:  # pad to the fixed number of policy steps so batches concatenate
            pad = torch.zeros((n, t_max - x.shape[1], *x.shape[2:]), dtype=x.dtype)
            x = torch.cat([x, pad], 1)
        out[k] = x
    out["mask"] = out["mask"] & ~fault[:, None]
    out.update(success=success & ~fault, ret=ret, length=length, fault=fault, last_value=last_value)
    if frames:
        out["frames"] = [torch.stack(cl) for cl in clips]
    return out
