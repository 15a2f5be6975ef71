"""rewards: a reward-model zoo usable on its own.

    import rewards
    r = rewards.load("ocr")
    out = r(images, prompts)          # RewardOutput(scores=float32 [N], details={...})

See rewards.base for accepted image formats. Imports nothing from genrl or samplers.
"""

from rewards.base import Reward, RewardOutput, to_pil, to_tensor
from rewards.combine import combine
from rewards.registry import available, load, register

__all__ = ["Reward", "RewardOutput", "available", "combine", "load", "register", "to_pil", "to_tensor"]
