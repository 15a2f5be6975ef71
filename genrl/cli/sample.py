"""`genrl sample --model assets/shapes-base --prompt "two red circles" --num 8 --out DIR [--seed S]`:
generate images for a prompt and write DIR/grid.png (prompt on top, each image's shapes-reward score when the
prompt is in the shapes grammar) plus DIR/sample_XX.png (video models: GIFs; 3D models: DIR/sample_XX.ply meshes and
a turntable DIR/grid.gif). The same seed gives the same images.

Sampling goes through genrl.shapes.generate.generate; `velocity_factory(args, policy)` is the hook where
guidance variants (e.g. RL Guidance with a LoRA) plug in.
"""

from __future__ import annotations

import argparse
import os

from genrl.cli import UserError
from genrl.shapes.generate import DEFAULT_CFG, DEFAULT_SHIFT, DEFAULT_STEPS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="assets/shapes-base", help="pipeline directory or hub id")
    p.add_argument("--prompt", required=True, help='e.g. "a photo of two red circles"')
    p.add_argument("--num", type=int, default=8, help="number of images")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (same seed, same images)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="sampler steps")
    p.add_argument("--cfg-scale", type=float, default=DEFAULT_CFG, help="classifier-free guidance (1 = none)")
    p.add_argument("--method", default="euler", help="sampler: euler | heun | dpm2")
    p.add_argument("--shift", type=float, default=DEFAULT_SHIFT,
                   help="sigma-schedule shift (default: the model scheduler's own, e.g. 3.0 for SD3.5)")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    from genrl.cli.dllm import add_text_arguments

    add_text_arguments(p)  # masked diffusion LMs (--model a transformers directory): genrl/cli/dllm.py
    p.add_argument("--lora", default=None, metavar="RUN_DIR_OR_LORA",
                   help="RL Guidance: a fine-tuned LoRA (run directory or LoRA directory) on top of --model")
    p.add_argument("--condition", default=None, metavar="LABEL",
                   help="CTRL: sample with this label of the --lora's condition embedding (its condition.json)")
    p.add_argument("--condition-scale", type=float, default=None, metavar="W",
                   help="with --condition: guidance over the condition only (negative = same prompt, NULL label)")
    p.add_argument("--rlg-scale", type=float, default=None, metavar="W",
                   help="RL Guidance scale with --lora (default 1): v = v_base + W (v_lora - v_base), CFG inside each "
                        "first; 0 = base, 1 = fine-tuned, >1 extrapolates")


def velocity_factory(args, policy):
    """None = plain CFG sampling; a callable(policy, cond, uncond) -> velocity_fn(x, sigma) otherwise."""
    if getattr(args, "condition", None) is not None:  # CTRL's label (genrl/policies/condition.py)
        from genrl.policies.condition import condition_factory

        inner = None
        if getattr(args, "rlg_scale", None) is not None:
            from genrl.rlg import rlg_velocity_fn
            from genrl.shapes.generate import cfg_velocity

            scale = args.cfg_scale if args.condition_scale is None else args.condition_scale
            inner = lambda pol, c, u: rlg_velocity_fn(pol, c, u, scale, args.rlg_scale, cfg_fn=cfg_velocity)  # noqa: E731
        return condition_factory(args.condition, args.cfg_scale, args.condition_scale, inner)
    if getattr(args, "lora", None):  # RL Guidance (genrl/rlg.py), with the same CFG velocity as plain sampling
        from genrl.rlg import rlg_velocity_fn
        from genrl.shapes.generate import cfg_velocity

        w = 1.0 if args.rlg_scale is None else args.rlg_scale
        return lambda pol, cond, uncond: rlg_velocity_fn(pol, cond, uncond, args.cfg_scale, w, cfg_fn=cfg_velocity)
    return None


def run(args) -> int:
    from genrl.cli.dllm import is_text_model

    if is_text_model(args.model):
        from genrl.cli.dllm import run_sample

        return run_sample(args)
    import torch
    from PIL import Image

    from genrl.logging_utils import save_grid, save_video_grid
    from genrl.policies import load_policy
    from genrl.shapes.generate import generate

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num < 1 or args.steps < 1:
        raise UserError("--num and --steps must be >= 1")
    if os.path.isfile(args.out) or (os.path.isdir(args.out) and os.listdir(args.out)):
        raise UserError(f"--out {args.out} already exists and is not empty; choose a new directory (nothing was "
                        "written)")
    if os.path.isfile(args.model):
        raise UserError(f"--model {args.model} is a file; pass a pipeline directory or a hub id")
    if getattr(args, "rlg_scale", None) is not None and not getattr(args, "lora", None):
        raise UserError("--rlg-scale needs --lora RUN_DIR_OR_LORA (the fine-tuned model to guide with)")
    if getattr(args, "condition", None) is not None and not getattr(args, "lora", None):
        raise UserError("--condition needs --lora RUN_DIR_OR_LORA (a CTRL run, whose LoRA holds the condition)")
    if getattr(args, "condition_scale", None) is not None and getattr(args, "condition", None) is None:
        raise UserError("--condition-scale needs --condition LABEL")
    if getattr(args, "lora", None):
        from genrl.rlg import load_rlg_policy

        policy = load_rlg_policy(args.model, args.lora)  # one copy of the base weights + the LoRA
    else:
        policy = load_policy(args.model).eval()
    prompts = [args.prompt] * args.num
    images = generate(policy, prompts, seed=args.seed, steps=args.steps, cfg_scale=args.cfg_scale,
                      method=args.method, shift=args.shift, resolution=args.resolution,
                      velocity_fn_factory=velocity_factory(args, policy))
    scores = None
    meta = policy.metadata_for(prompts)
    world = getattr(policy, "world", None) or "shapes"
    if meta is not None:
        import rewards

        out = rewards.load(world)(images, prompts, meta)  # each world's exact reward has the world's name
        scores = out.details["partial"].tolist()
        print(f"{world} reward: strict {out.details['strict'].mean():.3f}  partial {out.scores.mean():.3f}")
    os.makedirs(args.out, exist_ok=True)
    title = f'"{args.prompt}"  seed {args.seed}, {args.steps} steps, cfg {args.cfg_scale}'
    if getattr(policy, "sample_format", "image") == "voxels":  # 3D: a PLY mesh per asset + a turntable GIF grid
        from genrl.worlds.shapes3d.export import save_plys, save_turntable_grid

        for i in save_plys(images, args.out, "sample_{:02d}.ply"):
            print(f"sample {i} is empty (no filled voxel): no sample_{i:02d}.ply")
        path = save_turntable_grid(images, [""] * len(images), os.path.join(args.out, "grid.gif"), scores, title)
        print(f"wrote {path} and the PLY meshes")
        return 0
    video = images.ndim == 5  # clips [N, F, 3, H, W]
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).numpy()
    for i, a in enumerate(arr):
        if video:
            frames = [Image.fromarray(f) for f in a]
            frames[0].save(os.path.join(args.out, f"sample_{i:02d}.gif"), save_all=True, append_images=frames[1:],
                           duration=150, loop=0)
        else:
            Image.fromarray(a).save(os.path.join(args.out, f"sample_{i:02d}.png"))
    if getattr(args, "condition", None) is not None:
        title += f", condition {args.condition}"
    save, name = (save_video_grid, "grid.gif") if video else (save_grid, "grid.png")
    path = save(images, [""] * len(images), os.path.join(args.out, name), scores=scores, title=title, cell=128)
    print(f"wrote {path}")
    return 0
