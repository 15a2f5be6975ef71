"""3D benchmark: held-out strict and partial credit of the 3D shapes world against CPU time, single-stage vs
hierarchical (coarse geometry / fine colour stages, genrl/hierarchy.py), from the shipped voxel model
(assets/shapes3d-base).

    python benchmarks/shapes3d.py                                 # NFT and hierarchical NFT, seed 0, 30 CPU-min each
    python benchmarks/shapes3d.py --methods grpo grpo_hierarchical --seeds 0 1 2

Runs configs/3d/<method>.yaml; protocol and outputs: benchmarks/world_rl.py (128 held-out prompts, 32 per category).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from world_rl import main as run_benchmark  # noqa: E402

METHODS = ["nft", "nft_hierarchical", "grpo", "grpo_hierarchical"]

if __name__ == "__main__":
    raise SystemExit(run_benchmark("shapes3d.py", __doc__, "3d", "shapes3d", METHODS, "shapes3d", "bench_3d", 5))
