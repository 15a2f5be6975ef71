"""Hierarchical (coarse-to-fine) rewards: `advantage.stages`, each stage with its own reward ensemble and group
advantages, applied to the timesteps it covers.

The text-to-3D RL study's Hi-GRPO scores an autoregressive model's two generation steps separately: a coarse global
shape, then a local texture refinement, each with its own reward ensemble. A flow model builds a sample coarse to fine
along its trajectory: high noise (t near 1) sets the global layout, low noise the detail. genrl therefore gives each
stage a band of timesteps, stage k covering t_min[k] <= t < t_min[k-1] (t_min descending, the last 0; t = 1 noise):

    advantage:
      stages:
        - {name: coarse, t_min: 0.6, rewards: {shapes3d: 1.0}, reward_options: {shapes3d: {checks: [count, color]}}}
        - {name: fine,   t_min: 0.0, rewards: {shapes3d: 1.0}, reward_options: {shapes3d: {checks: [shape]}}}

Every stage's ensemble scores every sample; the loop turns the step's stage scores [N, S] into group advantages per
stage (column) and an algorithm trains a timestep t with the advantages of the stage covering t (Flow-GRPO: its
trained SDE steps; NFT / AWM: their re-noising times). The top-level `rewards` ensemble is still computed and is
what is logged and evaluated (e.g. the world's full strict / partial). Which check belongs to which band is best
measured (benchmarks/shapes3d_stages.py re-noises samples and sees what survives). This time-band reading of
Hi-GRPO is genrl's adaptation (docs/3d.md), not code from the study (its training code is not released).
"""

from __future__ import annotations

import math

import torch

from rewards.base import Reward, RewardOutput

STAGE_KEYS = {"name", "t_min", "rewards", "reward_options"}
ALGORITHMS = ("grpo", "nft", "awm")  # those that train timestep by timestep and call stage_advantages


def validate_stages(stages: list[dict], algorithm: str) -> None:
    """One-line ValueError for a malformed `advantage.stages` list."""
    if not stages:
        return
    if algorithm not in ALGORITHMS:
        raise ValueError(f"advantage.stages (hierarchical rewards) works with algorithm.name in "
                         f"{', '.join(ALGORITHMS)}, not {algorithm!r}")
    names = []
    for k, st in enumerate(stages):
        if not isinstance(st, dict) or set(st) - STAGE_KEYS or not {"name", "t_min", "rewards"} <= set(st):
            raise ValueError(f"advantage.stages[{k}] must be a mapping with name, t_min, rewards (and optional "
                             f"reward_options), got {st!r}")
        if not st["rewards"]:
            raise ValueError(f"advantage.stages[{k}] ({st['name']}) has no rewards")
        names.append(st["name"])
    t_mins = [float(st["t_min"]) for st in stages]
    if any(not math.isfinite(t) for t in t_mins) or t_mins != sorted(t_mins, reverse=True) or \
            len(set(t_mins)) != len(t_mins) or t_mins[-1] != 0.0 or t_mins[0] >= 1.0:
        raise ValueError(f"advantage.stages t_min must strictly decrease from below 1 to 0 for the last stage (stage k "
                         f"covers t_min[k] <= t < t_min[k-1]), got {t_mins}")
    if len(set(names)) != len(names):
        raise ValueError(f"advantage.stages names must be unique, got {names}")


class StagedReward(Reward):
    """The top-level reward (scores, details: what is logged and evaluated) plus every stage's ensemble score as
    details "stage/<name>" [N]; `stage_scores(out)` stacks them into [N, S] for the advantages."""

    def __init__(self, main: Reward, stages: dict[str, Reward]):
        self.main, self.stages = main, stages
        self.name = main.name
        self.input_format = main.input_format

    def check_inputs(self, prompts, metadata=None) -> None:
        for r in (self.main, *self.stages.values()):
            r.check_inputs(prompts, metadata)

    def check_sample_format(self, sample_format: str) -> None:
        for r in (self.main, *self.stages.values()):
            r.check_sample_format(sample_format)

    def __call__(self, samples, prompts, metadata=None) -> RewardOutput:
        out = self.main(samples, prompts, metadata)
        details = dict(out.details)
        for name, r in self.stages.items():
            details[f"stage/{name}"] = r(samples, prompts, metadata).scores.float()
        return RewardOutput(out.scores, details)

    def stage_scores(self, out: RewardOutput) -> torch.Tensor:
        return torch.stack([out.details[f"stage/{n}"].float().cpu() for n in self.stages], 1)


def build_staged_reward(main: Reward, stages: list[dict]) -> StagedReward:
    import rewards

    return StagedReward(main, {st["name"]: rewards.combine(dict(st["rewards"]), dict(st.get("reward_options") or {}))
                               for st in stages})


def stage_advantages(adv: torch.Tensor, t, t_mins: list[float]) -> torch.Tensor:
    """The advantage each sample trains timestep t with: adv [N] (no stages) is returned as is; adv [N, S] gives
    sample i the column of the stage covering t_i (t: a scalar or [N]; t_mins descending, the last 0)."""
    if adv.ndim == 1:
        return adv
    t = torch.as_tensor(t, dtype=torch.float32, device=adv.device).reshape(-1).expand(adv.shape[0])
    bounds = torch.tensor(t_mins[:-1], dtype=torch.float32, device=adv.device)
    k = (t[:, None] < bounds[None]).sum(1)
    return adv.gather(1, k[:, None]).squeeze(1)
