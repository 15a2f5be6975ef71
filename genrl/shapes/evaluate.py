"""GenEval-style evaluation on a world's split: generate one sample per split entry, score with a reward, report
per-category and overall (= mean over categories, as GenEval) strict and partial scores. Worlds: "shapes" (images,
reward "shapes"), "motion" (the moving-shapes video world, genrl/worlds/motion, reward "motion") and "shapes3d" (the 3D
shapes world, genrl/worlds/shapes3d, reward "shapes3d").

Protocol (the numbers in assets/shapes-base/README.md): split "eval" (48 entries per category, 288 images),
Euler ODE with DEFAULT_STEPS steps on flow_sigmas(steps, shift), CFG scale DEFAULT_CFG, noise seeded by `seed`.
"""

from __future__ import annotations

import torch

import rewards
from genrl.shapes.generate import DEFAULT_CFG, DEFAULT_SHIFT, DEFAULT_STEPS, generate
from genrl.shapes.prompts import prompts_and_metadata, split_specs
from rewards.shapes.score import summarize

WORLD_REWARDS = {"shapes": "shapes", "motion": "motion", "shapes3d": "shapes3d"}


def world_specs(world: str, split: str, per_category: int | None = None) -> list[dict]:
    """The specs of a world's split (each with "prompt" and the category "tag")."""
    if world == "shapes":
        return split_specs(split, per_category)
    if world == "motion":
        from genrl.worlds.motion.prompts import split_specs as motion_specs

        return motion_specs(split, per_category)
    if world == "shapes3d":
        from genrl.worlds.shapes3d.prompts import split_specs as shapes3d_specs

        return shapes3d_specs(split, per_category)
    raise ValueError(f"unknown world {world!r}; choose one of {', '.join(WORLD_REWARDS)}")


def evaluate(policy, reward: str | None = None, split: str = "eval", seed: int = 0, steps: int = DEFAULT_STEPS,
             cfg_scale: float = DEFAULT_CFG, method: str = "euler", shift: float = DEFAULT_SHIFT,
             per_category: int | None = None, batch_size: int = 64, world: str | None = None,
             **generate_kwargs) -> tuple[dict, torch.Tensor, list]:
    """(report, samples, specs). report = {"overall": {"strict", "partial", "n"}, "per_category": {...},
    "protocol": {...}}; for a reward without strict/partial details both equal its score. `world` defaults to the
    policy's (`policy.world`, else "shapes"); `reward` to the world's exact reward."""
    world = world or getattr(policy, "world", None) or "shapes"
    reward = reward or WORLD_REWARDS[world]
    specs = world_specs(world, split, per_category)
    prompts, metadata = prompts_and_metadata(specs)
    images = generate(policy, prompts, seed=seed, steps=steps, cfg_scale=cfg_scale, method=method, shift=shift,
                      batch_size=batch_size, **generate_kwargs)
    out = rewards.load(reward)(images, prompts, metadata)
    strict = out.details.get("strict", out.scores)
    partial = out.details.get("partial", out.scores)
    report = summarize([s["tag"] for s in specs], strict, partial)
    report["protocol"] = {"world": world, "reward": reward, "split": split, "seed": seed, "steps": steps,
                          "cfg_scale": cfg_scale,
                          "method": method, "shift": shift, "images": len(specs)}
    return report, images, specs


def format_report(report: dict) -> str:
    lines = [f"{'category':<15}{'strict':>8}{'partial':>9}{'n':>6}"]
    for name, v in report["per_category"].items():
        lines.append(f"{name:<15}{v['strict']:>8.3f}{v['partial']:>9.3f}{v['n']:>6}")
    o = report["overall"]
    lines.append(f"{'overall':<15}{o['strict']:>8.3f}{o['partial']:>9.3f}{o['n']:>6}")
    return "\n".join(lines)
