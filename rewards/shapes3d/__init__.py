"""The 3D shapes world's exact reward: `rewards.load("shapes3d")`.

reward(grids, prompts, metadata=[{"spec": spec}, ...] or None) -> RewardOutput
  grids:   voxel grids [N, 4, G, G, G] (occupancy + RGB in [0, 1], x/y/z order, y up; rewards.base.to_voxels)
  scores:  partial credit (default) or strict 0/1 (`score="strict"`); `checks` restricts both to some of the checks
           ("count", "shape", "color", "relation"), e.g. checks=["count", "shape", "relation"] for geometry only
  details: "strict", "partial", each check as a tensor [N] (NaN where it does not apply: colour on a prompt with no
           colour, relation on a prompt without one), "tag" and "objects" (per grid: shape, fit, colour, voxels)
Without metadata (or without a "spec" in it) the prompt is parsed with the world's grammar (world.py).
"""

from __future__ import annotations

import torch

from rewards.base import RewardOutput
from rewards.registry import register
from rewards.shapes3d.geometry import PRIMITIVES, best_fit, primitive_mask, voxel_centres
from rewards.shapes3d.score import CHECKS, find_objects, score_grid
from rewards.shapes3d.world import CATEGORIES, RELATIONS, SHAPES, make_spec, parse_prompt, validate_spec
from rewards.spec_reward import SpecReward


@register("shapes3d")
class Shapes3DReward(SpecReward):
    name = "shapes3d"
    input_format = "voxels"
    batch_size = 64

    parse = staticmethod(parse_prompt)
    validate = staticmethod(validate_spec)

    def __init__(self, score: str = "partial", checks: list[str] | tuple[str, ...] = CHECKS):
        super().__init__(score)
        unknown = set(checks) - set(CHECKS)
        if unknown or not checks:
            raise ValueError(f"shapes3d reward: checks must be a non-empty subset of {', '.join(CHECKS)}, got "
                             f"{list(checks)}")
        self.checks = tuple(checks)

    def score(self, grids, prompts, metadata) -> RewardOutput:
        specs = self._specs(prompts, metadata)
        rows = [score_grid(g, s, self.checks) for g, s in zip(grids.cpu().double().numpy(), specs)]
        strict = torch.tensor([r["strict"] for r in rows])
        partial = torch.tensor([r["partial"] for r in rows])
        details = {"strict": strict, "partial": partial,
                   **{c: torch.tensor([r["checks"].get(c, float("nan")) for r in rows]) for c in CHECKS},
                   "tag": [s["tag"] for s in specs],
                   "objects": [[{k: o[k] for k in ("shape", "fit", "color", "voxels")} for o in r["objects"]]
                               for r in rows]}
        return RewardOutput(strict if self.score_kind == "strict" else partial, details)


__all__ = ["CATEGORIES", "CHECKS", "PRIMITIVES", "RELATIONS", "SHAPES", "Shapes3DReward", "best_fit", "find_objects",
           "make_spec", "parse_prompt", "primitive_mask", "score_grid", "validate_spec", "voxel_centres"]
