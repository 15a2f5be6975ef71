"""rewards: a reward-model zoo usable on its own.

    import rewards
    r = rewards.load("pickscore", device="cuda")   # or "ocr", "clip_score", "aesthetic", "hpsv2", ...
    out = r(images, prompts)                        # RewardOutput(scores=float32 [N], details={...})
    mix = rewards.combine({"pickscore": 1.0, "ocr": 0.5})

`rewards.available()` lists every name; `rewards.options_of(name)` its load() options. Images: a list of PIL
images, uint8 HxWx3 arrays, or a float tensor [N, 3, H, W] in [0, 1] (see rewards.base). See docs/rewards.md.
Imports nothing from genrl or samplers.
"""

from rewards.base import Reward, RewardOutput, to_pil, to_tensor, to_video
from rewards.combine import combine
from rewards.registry import available, load, options_of, register

__all__ = ["Reward", "RewardOutput", "available", "combine", "load", "options_of", "register", "to_pil", "to_tensor",
           "to_video"]
