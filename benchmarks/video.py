"""Video benchmark: held-out motion reward against CPU time for Flow-GRPO, DiffusionNFT and AWM on the moving-shapes
world, from the shipped pixel-space Wan model (assets/motion-video-base).

    python benchmarks/video.py                                  # 3 methods, seed 0, 30 CPU-minutes each
    python benchmarks/video.py --methods nft --seeds 0 1 2 --cpu-minutes 30 --out benchmarks/video_nft

Runs configs/video/<method>.yaml; protocol and outputs: benchmarks/world_rl.py (partial and strict credit on 96
held-out clips).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from world_rl import main as run_benchmark  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_benchmark("video.py", __doc__, "video", "motion", ["grpo", "nft", "awm"], "video",
                                   "bench_video", 5))
