"""`genrl eval --model ROBOT_POLICY_DIR --episodes N --seed S --out F.json [--gif F.gif] [--env ID]`: ODE success
rate of a robot flow policy over N episodes from fixed initial states (seed S = 0: the held-out `episodes:eval` set,
reset seeds 1000000 + i; other S shift them by 10000 S). JSON: success_rate, episodes, return_mean, length_mean,
faults (episodes dropped after an env fault), env, model, seed."""

from __future__ import annotations

import os


def is_robot_policy(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "robot_policy.json"))


def run_robot_eval(args) -> int:
    import torch

    from genrl.cli import UserError, write_report
    from genrl.policies import load_policy
    from genrl.worlds.bc import success_rate
    from genrl.worlds.envs import EVAL_SEED_OFFSET, make_env
    from genrl.worlds.episodes import run_episodes

    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    torch.set_num_threads(args.threads or 1)
    policy = load_policy(args.model).eval()
    env_id = args.env or policy.config.env
    offset = EVAL_SEED_OFFSET + 10_000 * args.seed
    opts = {"max_steps": args.max_steps} if args.max_steps else {}
    report = success_rate(policy, env_id, args.episodes, seed=args.seed, env_opts=opts, offset=offset)
    report.update(env=env_id, model=args.model, seed=args.seed, first_reset_seed=offset)
    print(f"{args.model} on {env_id}: success {report['success_rate']:.3f} over {report['episodes']} episodes "
          f"(mean length {report['length_mean']:.1f}, faults {report['faults']})")
    write_report(args.out, report)
    if args.gif:
        n = min(8, args.episodes)
        ep = run_episodes(policy, make_env(env_id, n, **opts), list(range(offset, offset + n)), "ode",
                          torch.Generator().manual_seed(args.seed), frames=True)
        policy.save_samples(ep["frames"], [""] * n, args.gif.removesuffix(".gif"), ep["success"].float().tolist(),
                            title=f"{os.path.basename(os.path.normpath(args.model))} {env_id}")
        print(f"wrote {args.gif}")
    return 0
