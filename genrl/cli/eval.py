"""`genrl eval --model assets/shapes-base --split eval [--lora RUN_DIR_OR_LORA] [--out scores.json] [--seed S]`:
generate the split's images (clips, for the moving-shapes video model) and print per-category and overall
scores (GenEval-style; see genrl/shapes/evaluate.py). The JSON is {"overall": {"strict", "partial"},
"per_category": {name: {...}},
"protocol": {...}}."""

from __future__ import annotations

import argparse
import os

from genrl.cli import UserError, write_report
from genrl.shapes.generate import DEFAULT_CFG, DEFAULT_SHIFT, DEFAULT_STEPS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="assets/shapes-base", help="pipeline directory or hub id")
    p.add_argument("--reward", default=None,
                   help="reward name (rewards.available()); default: the model's world's (shapes, motion)")
    p.add_argument("--split", default="eval", choices=["train", "eval"], help="the world's prompt split")
    p.add_argument("--out", default=None, help="write the scores as JSON here")
    p.add_argument("--grid", default=None,
                   help="also write a grid of the first samples of each category (PNG; an animated GIF for video)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fixed per-prompt noise")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="sampler steps")
    p.add_argument("--cfg-scale", type=float, default=DEFAULT_CFG, help="classifier-free guidance (1 = none)")
    p.add_argument("--method", default="euler", help="sampler: euler | heun | dpm2")
    p.add_argument("--shift", type=float, default=DEFAULT_SHIFT, help="sigma-schedule shift")
    p.add_argument("--per-category", type=int, default=None, help="eval entries per category (default 48)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--lora", default=None, metavar="RUN_DIR_OR_LORA",
                   help="image, video and 3D models: score the fine-tuned model (a run directory or its LoRA "
                        "directory, as `genrl sample --lora`) instead of the base --model")
    from genrl.cli.dllm import add_text_arguments

    add_text_arguments(p)  # masked diffusion LMs (--model a transformers directory): genrl/cli/dllm.py
    g = p.add_argument_group("robot policies (a directory with robot_policy.json; genrl/worlds/eval_cli.py)")
    g.add_argument("--episodes", type=int, default=100, help="episodes from fixed initial states")
    g.add_argument("--env", default=None, help="environment id (default: the policy's own)")
    g.add_argument("--max-steps", type=int, default=None, help="env steps per episode (default: the env's)")
    g.add_argument("--gif", default=None, help="also write an animated GIF of the first 8 episodes")


def run(args) -> int:
    from genrl.cli.dllm import is_text_model

    if is_text_model(args.model):
        if args.lora:
            raise UserError("--lora is for image, video and 3D models; a text model's LoRA goes in --adapter LORA_DIR")
        from genrl.cli.dllm import run_eval

        return run_eval(args)
    import torch

    from genrl.logging_utils import save_grid, save_video_grid
    from genrl.policies import load_policy
    from genrl.shapes.evaluate import evaluate, format_report
    from genrl.worlds.eval_cli import is_robot_policy, run_robot_eval

    if args.adapter:
        raise UserError("--adapter is for text models; score an image, video or 3D model's LoRA with --lora "
                        "RUN_DIR_OR_LORA")
    if os.path.isdir(args.model) and is_robot_policy(args.model):
        if args.lora:
            raise UserError("--lora is for image, video and 3D models, not robot policies")
        return run_robot_eval(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if not os.path.exists(args.model):
        raise UserError(f"--model {args.model} not found; train one with `genrl pretrain shapes --out DIR`")
    if args.lora:
        from genrl.rlg import load_rlg_policy

        policy = load_rlg_policy(args.model, args.lora)  # the base with the run's LoRA
    else:
        policy = load_policy(args.model).eval()
    report, images, specs = evaluate(policy, args.reward, args.split, seed=args.seed, steps=args.steps,
                                     cfg_scale=args.cfg_scale, method=args.method, shift=args.shift,
                                     per_category=args.per_category, batch_size=args.batch_size)
    report["protocol"]["model"] = args.model
    if args.lora:
        report["protocol"]["lora"] = args.lora
    print(format_report(report))
    write_report(args.out, report)
    if args.grid:
        idx, seen = [], {}
        for i, s in enumerate(specs):
            if seen.get(s["tag"], 0) < 8:
                seen[s["tag"]] = seen.get(s["tag"], 0) + 1
                idx.append(i)
        save = save_video_grid if images.ndim == 5 else save_grid
        save(images[idx], [specs[i]["prompt"].removeprefix("a photo of ") for i in idx], args.grid, cols=8,
             title=f"{args.model} (seed {args.seed}, {args.steps} steps, cfg {args.cfg_scale})", cell=96)
        print(f"wrote {args.grid}")
    return 0
