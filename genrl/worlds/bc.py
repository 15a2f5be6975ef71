"""Behaviour cloning of a flow action policy from scripted-expert demonstrations (`genrl pretrain robot`).

Demonstrations: the env's scripted expert (robot2d: the bimodal left/right expert; metaworld: Sawyer*V3Policy)
acts with Gaussian action noise `demo_noise` for state diversity, and its CLEAN action is the label (DART-style);
only successful episodes are kept. A sample is (obs_t, [a_t .. a_{t+H-1}]), padded past the episode end with its
last action. Loss: the flow-matching loss (policy.bc_loss; t = 1 noise), AdamW, batch `batch_size`. The success
rate (ODE, fixed held-out initial states `episodes:eval`) is measured at the end and written to the model card.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch

from genrl.malloc import keep_freed_memory
from genrl.worlds.envs import EVAL_SEED_OFFSET, make_env


@dataclass
class BCConfig:
    env: str = "robot2d"
    demos: int = 40  # successful demonstration episodes
    steps: int = 300  # optimizer steps
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    horizon: int = 8
    action_chunk: int = 4
    denoise_steps: int = 4
    hidden: int = 256
    layers: int = 3
    demo_noise: float = 0.1
    eval_episodes: int = 100
    max_steps: int | None = None  # env truncation (None = the env default)
    threads: int = 1
    backbone: str = "mlp"  # mlp | pi0 (then pi0_path; the camera is env.render(); horizon = pi0's chunk_size)
    pi0_path: str | None = None
    image_size: int = 224


def env_options(cfg: BCConfig) -> dict:
    return {} if cfg.max_steps is None else {"max_steps": cfg.max_steps}


@torch.no_grad()
def collect_demos(cfg: BCConfig, log=print) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor | None]:
    """(obs [M, obs_dim], action chunks [M, H, action_dim], stats, camera frames [M, S, S, 3] uint8 for the pi0
    backbone else None) from `cfg.demos` successful expert episodes."""
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(32, cfg.demos)
    env = make_env(cfg.env, batch, **env_options(cfg))
    expert = env.expert()
    obs_all, act_all, img_all = [], [], []
    cams = cfg.backbone == "pi0"
    kept = tried = succeeded = 0
    seed = cfg.seed * 100_003
    while kept < cfg.demos:
        if tried >= 20 * cfg.demos + 64:
            raise ValueError(f"the scripted expert succeeded in only {kept} of {tried} {cfg.env} episodes (need "
                             f"{cfg.demos}); raise --max-steps or lower --demos")
        seeds = list(range(seed, seed + batch))
        seed += batch
        obs, _ = env.reset(seed=seeds)
        expert.reset(batch, gen)
        traj_o, traj_a, traj_i = [], [], []
        alive = torch.ones(batch, dtype=torch.bool)
        success = torch.zeros(batch, dtype=torch.bool)
        lengths = torch.zeros(batch, dtype=torch.long)
        for _ in range(env.max_steps):
            a = expert.act(obs).float()
            traj_o.append(obs.clone())
            traj_a.append(a.clone())
            if cams:
                traj_i.append(env.render())
            noisy = (a + cfg.demo_noise * torch.randn(a.shape, generator=gen)).clamp(-1, 1)
            lengths += alive.long()
            obs, _, te, tr, info = env.step(noisy)
            success |= alive & info["success"]
            alive &= ~(te | tr)
            if not alive.any():
                break
        o, a = torch.stack(traj_o, 1), torch.stack(traj_a, 1)
        tried += batch
        succeeded += int(success.sum())
        for i in range(batch):
            if not success[i] or kept >= cfg.demos:
                continue
            kept += 1
            n = int(lengths[i])
            ai = a[i, :n]
            pad = ai[-1:].expand(cfg.horizon, -1)
            ext = torch.cat([ai, pad], 0)
            obs_all.append(o[i, :n])
            if cams:
                img_all.append(torch.stack(traj_i, 1)[i, :n])
            act_all.append(torch.stack([ext[t : t + cfg.horizon] for t in range(n)]))
    obs_t, act_t = torch.cat(obs_all), torch.cat(act_all)
    stats = {"demo_episodes": kept, "expert_episodes_tried": tried, "expert_success_rate": succeeded / tried,
             "samples": int(obs_t.shape[0])}
    log(f"demos: {kept} successful of {tried} expert episodes, {obs_t.shape[0]} samples")
    return obs_t, act_t, stats, (torch.cat(img_all) if cams else None)


@torch.no_grad()
def success_rate(policy, env_id: str, episodes: int, seed: int = 0, batch: int = 50, env_opts: dict | None = None,
                 offset: int = EVAL_SEED_OFFSET) -> dict:
    """ODE success rate over initial states offset + 0 .. offset + episodes - 1 (the `episodes:eval` set)."""
    from genrl.worlds.episodes import run_episodes

    succ, ret, length, fault = [], [], [], []
    for i in range(0, episodes, batch):
        seeds = list(range(offset + i, offset + min(episodes, i + batch)))
        env = make_env(env_id, len(seeds), **(env_opts or {}))
        ep = run_episodes(policy, env, seeds, "ode", torch.Generator().manual_seed(seed + i))
        succ.append(ep["success"].float())
        ret.append(ep["ret"])
        length.append(ep["length"].float())
        fault.append(ep["fault"].float())
    s = torch.cat(succ)
    return {"success_rate": float(s.mean()), "episodes": int(s.numel()), "return_mean": float(torch.cat(ret).mean()),
            "length_mean": float(torch.cat(length).mean()), "faults": int(torch.cat(fault).sum())}


def pretrain(out_dir: str, cfg: BCConfig, log=print) -> dict:
    from genrl.policies.robot import RobotFlowPolicy, RobotPolicyConfig

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # CPU pretraining: no per-step page faults (genrl/malloc.py)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    obs, acts, demo_stats, images = collect_demos(cfg, log)
    env = make_env(cfg.env, 1, **env_options(cfg))
    pcfg = RobotPolicyConfig(env=cfg.env, obs_dim=env.obs_dim, action_dim=env.action_dim, horizon=cfg.horizon,
                             action_chunk=cfg.action_chunk, steps=cfg.denoise_steps, hidden=cfg.hidden,
                             layers=cfg.layers, obs_mean=obs.mean(0).tolist(), obs_std=obs.std(0).tolist(),
                             backbone=cfg.backbone, pi0_path=cfg.pi0_path, image_size=cfg.image_size)
    policy = RobotFlowPolicy(pcfg)
    # the action expert only (pi0: the VLM stays frozen, as train_expert_only); the RL heads are trained by RL
    params = [p for n, p in policy.named_parameters() if n.startswith("expert.") and p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    losses = []
    for step in range(cfg.steps):
        idx = torch.randint(0, obs.shape[0], (cfg.batch_size,), generator=gen)
        loss = policy.bc_loss(obs[idx], acts[idx], gen, None if images is None else images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if (step + 1) % max(1, cfg.steps // 10) == 0:
            log(f"bc step {step + 1}/{cfg.steps}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    policy.eval()
    ev = success_rate(policy, cfg.env, cfg.eval_episodes, env_opts=env_options(cfg))
    minutes = (time.time() - t0) / 60
    log(f"eval: success {ev['success_rate']:.3f} over {ev['episodes']} held-out episodes ({minutes:.1f} min)")
    result = {"config": asdict(cfg), "demos": demo_stats, "eval": ev, "final_loss": losses[-1], "minutes": minutes}
    policy.save_pretrained(out_dir, card=model_card(cfg, pcfg, demo_stats, ev, minutes))
    with open(os.path.join(out_dir, "pretrain_log.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def model_card(cfg: BCConfig, pcfg, demo_stats: dict, ev: dict, minutes: float) -> str:
    mt1 = "; metaworld MT1: variation = seed mod 50, the set RL trains on" if cfg.env.startswith("metaworld/") else ""
    expert = f"MLP, {pcfg.layers} x {pcfg.hidden}, SiLU" if cfg.backbone == "mlp" else f"pi0 from {cfg.pi0_path}"
    return f"""# {cfg.env} BC flow policy (genrl)

A small flow-matching action expert ({expert}; action chunk H = {pcfg.horizon},
{pcfg.action_chunk} executed, K = {pcfg.steps} Euler steps, t = 1 noise) behaviour-cloned on the CPU with
`genrl pretrain robot --env {cfg.env} --demos {cfg.demos} --steps {cfg.steps} --seed {cfg.seed}`.
It is the base policy for pi_RL fine-tuning (configs/robot/); it is deliberately under-trained so RL has headroom.

- Demonstrations: {demo_stats['demo_episodes']} successful scripted-expert episodes ({demo_stats['samples']} samples;
  the noisy expert (action noise {cfg.demo_noise}) succeeded in {demo_stats['expert_success_rate']:.0%} of the
  {demo_stats['expert_episodes_tried']} episodes run); labels are the expert's clean actions.
- Training: flow-matching loss, AdamW lr {cfg.lr} (cosine), batch {cfg.batch_size}, {cfg.steps} steps,
  {minutes:.1f} min wall-clock on one CPU thread.
- Measured success rate (ODE, {ev['episodes']} evaluation episodes `episodes:eval`, reset seeds 1000000+{mt1}):
  **{ev['success_rate']:.3f}** (mean episode length {ev['length_mean']:.1f} env steps).
- Files: robot_policy.json (config + observation normalisation), model.safetensors, pretrain_log.json.
  Load with `genrl.policies.load_policy(DIR)`; evaluate with
  `genrl eval --model DIR --episodes 100 --seed 0 --out r.json`.
"""
