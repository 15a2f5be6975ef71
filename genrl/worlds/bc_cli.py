"""The `genrl pretrain robot` arguments and runner (behaviour cloning, genrl/worlds/bc.py)."""

from __future__ import annotations

import argparse
import os


def add_robot_arguments(p: argparse.ArgumentParser) -> None:
    from genrl.worlds.bc import BCConfig

    d = BCConfig()
    g = p.add_argument_group("robot (genrl pretrain robot)")
    g.add_argument("--env", default=d.env, help="environment id: robot2d | metaworld/reach-v3 | metaworld/push-v3 ...")
    g.add_argument("--demos", type=int, default=d.demos, help="successful scripted-expert episodes")
    g.add_argument("--horizon", type=int, default=d.horizon, help="actions per chunk H")
    g.add_argument("--action-chunk", type=int, default=d.action_chunk, help="actions executed per policy call")
    g.add_argument("--denoise-steps", type=int, default=d.denoise_steps, help="K Euler steps")
    g.add_argument("--hidden", type=int, default=d.hidden, help="MLP width")
    g.add_argument("--demo-noise", type=float, default=d.demo_noise, help="action noise while collecting demos")
    g.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="held-out episodes for the card")
    g.add_argument("--max-steps", type=int, default=None, help="env steps per episode (default: the env's)")
    g.add_argument("--backbone", choices=["mlp", "pi0"], default=d.backbone, help="built-in MLP expert or pi0")
    g.add_argument("--pi0-path", default=None, help="pi0 backbone: a PI0ForConditionalGeneration dir or hub id")
    g.add_argument("--image-size", type=int, default=d.image_size, help="pi0 backbone: camera frame size")


def run_robot(args) -> int:
    from genrl.cli import UserError
    from genrl.worlds.bc import BCConfig, pretrain
    from genrl.worlds.envs import make_env

    d = BCConfig()
    cfg = BCConfig(env=args.env, demos=args.demos, steps=args.steps if args.steps is not None else d.steps,
                   batch_size=args.batch_size or d.batch_size, lr=args.lr if args.lr is not None else d.lr,
                   seed=args.seed, horizon=args.horizon, action_chunk=args.action_chunk,
                   denoise_steps=args.denoise_steps, hidden=args.hidden, layers=args.layers or d.layers,
                   demo_noise=args.demo_noise, eval_episodes=args.eval_episodes, max_steps=args.max_steps,
                   threads=args.threads or 1, backbone=args.backbone, pi0_path=args.pi0_path,
                   image_size=args.image_size)
    if cfg.backbone == "pi0" and not cfg.pi0_path:
        raise UserError("--backbone pi0 needs --pi0-path (a PI0ForConditionalGeneration directory or hub id)")
    for name in ("demos", "steps", "batch_size", "horizon", "action_chunk", "denoise_steps", "hidden", "layers",
                 "eval_episodes"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.action_chunk > cfg.horizon:
        raise UserError(f"--action-chunk {cfg.action_chunk} must be <= --horizon {cfg.horizon}")
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise UserError(f"--out {args.out} exists and is not an empty directory; choose another path")
    make_env(cfg.env, 1)  # unknown id / missing metaworld: one-line error before any work
    res = pretrain(args.out, cfg, log=lambda s: print(s, flush=True))
    print(f"behaviour-cloned {cfg.steps} steps in {res['minutes']:.1f} min -> {args.out} "
          f"(held-out success {res['eval']['success_rate']:.3f})")
    return 0
