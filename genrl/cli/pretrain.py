"""`genrl pretrain shapes --out DIR [--minutes M] [--seed S]`: pretrain the shapes-world base model by flow
matching on rendered images (see genrl/shapes/pretrain.py for the recipe; docs/shapes.md for the world).
`genrl pretrain dllm --out DIR`: the puzzles world's masked diffusion LM (genrl/cli/dllm.py).
`genrl pretrain video --out DIR [--cpu-minutes M]`: the moving-shapes world's pixel-space Wan video model
(genrl/worlds/motion/pretrain.py; docs/video.md).
`genrl pretrain 3d --out DIR [--cpu-minutes M]`: the 3D shapes world's voxel flow model (genrl/worlds/shapes3d;
docs/3d.md).
`genrl pretrain robot --env robot2d --out DIR [--demos N] [--steps S]`: behaviour-clone a flow action policy from
scripted-expert demonstrations (genrl/worlds/bc.py; docs/robot.md)."""

from __future__ import annotations

import argparse
import os

from genrl.cli import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from genrl.shapes.model import ShapesModelConfig
    from genrl.shapes.pretrain import PretrainConfig

    d, m = PretrainConfig(), ShapesModelConfig()
    p.add_argument("world", choices=["shapes", "video", "3d", "dllm", "robot"],
                   help="what to pretrain: the shapes world's flow model, the moving-shapes world's video model, the "
                        "3D shapes world's voxel model, the puzzles world's dLLM (genrl.cli.dllm) "
                        "or a robot policy (genrl.worlds.bc_cli)")
    p.add_argument("--out", required=True, help="output pipeline directory (e.g. assets/shapes-base)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock budget in minutes")
    p.add_argument("--cpu-minutes", type=float, default=None,
                   help="process CPU-time budget in minutes (stops at whichever budget is spent first)")
    p.add_argument("--steps", type=int, default=None, help=f"maximum optimizer steps (shapes: {d.steps})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=None, help=f"(shapes: {d.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"(shapes: {d.lr})")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads (use 1 when other jobs share the CPU: oversubscription is very slow)")
    p.add_argument("--init", default=None,
                   help="continue from this pipeline directory's weights (fresh optimizer/EMA; model flags ignored)")
    p.add_argument("--prediction", choices=["x0", "v"], default=d.prediction,
                   help="transformer output: clean image x0 (x-prediction, v-loss) or velocity v")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="forward precision; auto = what measured faster on an AVX2 CPU: bf16 autocast for the shapes "
                        "model (~1.2x), fp32 for the Wan video / 3D models (bf16 is 1.4-1.7x slower there)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps")
    p.add_argument("--layers", type=int, default=None,
                   help=f"transformer blocks / robot MLP layers (shapes: {m.num_layers}, robot: 3)")
    p.add_argument("--heads", type=int, default=m.num_attention_heads, help="attention heads (x 32 = width)")
    p.add_argument("--resolution", type=int, default=m.resolution, help="image side in pixels")
    p.add_argument("--patch-size", type=int, default=m.patch_size)
    from genrl.worlds.bc_cli import add_robot_arguments

    add_robot_arguments(p)


def run(args) -> int:
    from genrl.shapes.model import ShapesModelConfig
    from genrl.shapes.pretrain import PretrainConfig, pretrain

    if args.world == "robot":
        from genrl.worlds.bc_cli import run_robot

        return run_robot(args)
    d, m = PretrainConfig(), ShapesModelConfig()
    args.steps = d.steps if args.steps is None else args.steps
    args.batch_size = d.batch_size if args.batch_size is None else args.batch_size
    args.lr = d.lr if args.lr is None else args.lr
    args.layers_given = args.layers is not None
    args.layers = m.num_layers if args.layers is None else args.layers
    if args.world == "dllm":  # flags left at the shapes defaults take the dLLM defaults
        from genrl.cli.dllm import run_pretrain

        return run_pretrain(args)
    if args.minutes <= 0 or args.steps <= 0 or (args.cpu_minutes is not None and args.cpu_minutes <= 0):
        raise UserError("--minutes, --cpu-minutes and --steps must be positive")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} exists and is not a directory; choose another path")
    if args.world in ("video", "3d"):
        if args.world == "video":
            from genrl.worlds.motion.model import MotionModelConfig as ModelConfig
            from genrl.worlds.motion.pretrain import pretrain as pretrain_world
        else:
            from genrl.worlds.shapes3d.model import Shapes3DModelConfig as ModelConfig
            from genrl.worlds.shapes3d.pretrain import pretrain as pretrain_world

        vm = ModelConfig()
        cfg = PretrainConfig(minutes=args.minutes, cpu_minutes=args.cpu_minutes, steps=args.steps, seed=args.seed,
                             batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay, threads=args.threads,
                             warmup=args.warmup, bf16=args.precision == "bf16")
        mcfg = ModelConfig(num_layers=args.layers if args.layers_given else vm.num_layers,
                           num_attention_heads=args.heads)
        res = pretrain_world(args.out, cfg, mcfg, log=lambda s: print(s, flush=True))
        print(f"pretrained {res['steps']} steps in {res['minutes']:.1f} min ({res['cpu_minutes']:.1f} CPU-min) "
              f"-> {args.out}")
        return 0
    if args.resolution % args.patch_size or not 24 <= args.resolution <= 128:
        raise UserError(f"--resolution {args.resolution} must be in 24..128 and divisible by --patch-size")
    cfg = PretrainConfig(minutes=args.minutes, cpu_minutes=args.cpu_minutes, steps=args.steps, seed=args.seed,
                         batch_size=args.batch_size,
                         lr=args.lr, ema_decay=args.ema_decay, threads=args.threads, init_from=args.init,
                         warmup=args.warmup, prediction=args.prediction,
                         bf16=args.precision != "fp32")
    mcfg = ShapesModelConfig(resolution=args.resolution, patch_size=args.patch_size, num_layers=args.layers,
                             num_attention_heads=args.heads)
    res = pretrain(args.out, cfg, mcfg, log=lambda s: print(s, flush=True))
    print(f"pretrained {res['steps']} steps in {res['minutes']:.1f} min -> {args.out}")
    return 0
