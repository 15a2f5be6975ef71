"""Prompt sources and the K-repeat prompt sampler.

Sources (`data.prompts`, `eval.prompts`):
  * "shapes:train" / "shapes:eval"   the shapes world's deterministic prompt splits (with structured specs,
                                     passed to rewards as metadata)
  * "motion:train" / "motion:eval"   the moving-shapes video world's splits (genrl/worlds/motion), with specs
  * "shapes3d:train" / "shapes3d:eval"   the 3D shapes world's splits (genrl/worlds/shapes3d), with specs
  * "sudoku:train" / "sudoku:eval" / "countdown:train" / "countdown:eval"   the puzzles world (dLLMs;
                                     genrl/worlds/puzzles), with the verifiers' metadata
  * a path to a text file            one prompt per line (blank lines and lines starting with '#' ignored)
  * a path to a .jsonl file          one JSON object per line with a "prompt" key; the whole object is the
                                     sample's reward metadata (e.g. GenEval's evaluation_metadata.jsonl rows)

K-repeat sampler (the reference's DistributedKRepeatSampler, keyed by step instead of epoch): each step draws
`groups_per_step` distinct prompts (a fresh permutation every pass through the source), repeats each
`group_size` times, shuffles the group_size * groups_per_step slots, and gives rank r the r-th contiguous
share. Every rank computes the same permutation from (seed, step), so each group is complete within the step
but spread across ranks, and the stream is a pure function of (seed, step): resuming needs no sampler state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class PromptSet:
    prompts: list[str]
    metadata: list[dict] | None = None  # per-prompt structured spec (shapes world) for rewards
    name: str = ""

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, n: int) -> PromptSet:
        """n prompts evenly spaced over the set (covers every category of an ordered split); n <= 0: all."""
        if n <= 0 or n >= len(self):
            return self
        idx = [int(i * len(self) / n) for i in range(n)]
        meta = None if self.metadata is None else [self.metadata[i] for i in idx]
        return PromptSet([self.prompts[i] for i in idx], meta, self.name)


def _world_split(world: str, split: str) -> PromptSet:
    from genrl.shapes.evaluate import world_specs
    from genrl.shapes.prompts import prompts_and_metadata

    prompts, metadata = prompts_and_metadata(world_specs(world, split))
    return PromptSet(prompts, metadata, f"{world}:{split}")


def load_prompts(source: str, key: str = "data.prompts") -> PromptSet:
    """A PromptSet from a source string (see module docstring); clear one-line errors for bad sources."""
    if source.startswith("episodes:"):
        from genrl.worlds.envs import episode_prompts

        return episode_prompts(source, key)
    if source.startswith(("shapes:", "motion:", "shapes3d:")):
        world, split = source.split(":", 1)
        if split not in ("train", "eval"):
            raise ValueError(f"{key}: unknown {world} split {split!r}; use {world}:train or {world}:eval")
        return _world_split(world, split)
    if source.split(":", 1)[0] in ("sudoku", "countdown") and not os.path.exists(source):
        from genrl.worlds.puzzles import task_prompts

        return PromptSet(*task_prompts(source, key))
    if not os.path.exists(source):
        raise FileNotFoundError(f"{key}: prompt file {source!r} not found; {_missing_hint(source)}")
    try:
        with open(source, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{key}: cannot read prompt file {source!r} ({type(e).__name__}: {e})") from None
    if source.endswith(".jsonl"):
        return _jsonl(source, lines, key)
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{key}: prompt file {source!r} has no prompts; write one prompt per line")
    return PromptSet(prompts, None, os.path.basename(source))


def _missing_hint(source: str) -> str:
    """How to get a missing prompt file: the generated sets, where the reference's PickScore prompts come from."""
    norm = source.replace(os.sep, "/")
    if "geneval" in norm:
        return "write GenEval-style train/test metadata with `genrl data geneval --out dataset/geneval`"
    if "ocr" in norm:
        return "write text-rendering prompts with `genrl data ocr --out dataset/ocr`"
    if "pickscore" in norm:
        return ("the reference's PickScore prompts (Pick-a-Pic) are the Flow-GRPO repository's "
                "dataset/pickscore/{train,test}.txt: put them there, or pass any prompt file with "
                "data.prompts=FILE eval.prompts=FILE")
    return "give a text file with one prompt per line, a .jsonl file with a \"prompt\" field, or shapes:train"


def _jsonl(source: str, lines: list[str], key: str) -> PromptSet:
    import json

    rows = []
    for n, ln in enumerate(lines, 1):
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
        except json.JSONDecodeError as e:
            raise ValueError(f"{key}: {source}:{n} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"{key}: {source}:{n} needs a \"prompt\" string field")
        rows.append(row)
    if not rows:
        raise ValueError(f"{key}: prompt file {source!r} has no prompts; write one JSON object per line")
    return PromptSet([r["prompt"] for r in rows], rows, os.path.basename(source))


class KRepeatSampler:
    """Deterministic K-repeat prompt groups for step `step` on rank `rank` of `num_replicas` (module docs)."""

    def __init__(self, num_prompts: int, group_size: int, groups_per_step: int, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0):
        total = group_size * groups_per_step
        if total % num_replicas:
            raise ValueError(
                f"sample.group_size * sample.groups_per_step = {total} must be divisible by the number of "
                f"processes ({num_replicas})"
            )
        if num_prompts < 1:
            raise ValueError("the prompt source is empty")
        self.n, self.k, self.m = num_prompts, group_size, groups_per_step
        self.replicas, self.rank, self.seed = num_replicas, rank, seed
        self.per_rank = total // num_replicas

    def _unique(self, step: int, round_: int = 0) -> list[int]:
        """The step's m prompt indices: consecutive slices of per-pass permutations of the source. Extra rollout
        rounds of a step (dynamic sampling) read the same positions of their own permutation stream."""
        start = step * self.m
        out = []
        while len(out) < self.m:
            pos = start + len(out)
            pass_idx, offset = divmod(pos, self.n)
            seed = self.seed * 7919 + pass_idx + round_ * 1_000_000_007
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))
            take = min(self.m - len(out), self.n - offset)
            out.extend(perm[offset : offset + take].tolist())
        return out

    def step_slots(self, step: int, round_: int = 0) -> tuple[list[int], list[int]]:
        """All ranks' slots for `step` (rollout round `round_`): (prompt index per slot, group id per slot), length
        k * m. Round r's group ids are r * m .. r * m + m - 1."""
        unique = self._unique(step, round_)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1 + round_ * 1_000_000_007)
        order = torch.randperm(self.k * self.m, generator=gen).tolist()
        groups = [order_i // self.k for order_i in order]
        return [unique[g] for g in groups], [g + round_ * self.m for g in groups]

    def indices(self, step: int, round_: int = 0) -> tuple[list[int], torch.Tensor]:
        """This rank's (prompt indices, group ids [n]) for `step`. Group ids are 0..m-1 (+ round * m), shared by
        all ranks."""
        idx, groups = self.step_slots(step, round_)
        sl = slice(self.rank * self.per_rank, (self.rank + 1) * self.per_rank)
        return idx[sl], torch.tensor(groups[sl], dtype=torch.long)
