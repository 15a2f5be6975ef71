"""Rewards for any video (clips [N, F, 3, H, W] in [0, 1]; rewards.base.to_video), not tied to a world.

    per_frame            an image reward applied to every `every`-th frame (frames 0, every, 2*every, ...) and
                         averaged over those frames (mean, or min with reduce="min"): flow_grpo's video OCR reward
                         is rewards.load("per_frame", reward="ocr", every=4); PickScore / CLIP averaged over frames
                         likewise. details: the frame scores [N, n_frames] ("frame_scores") and the image reward's
                         per-frame details averaged over frames where they are numeric.
    temporal_flickering  VBench's temporal flickering score: 1 - mean |frame_{t+1} - frame_t| over consecutive frame
                         pairs, pixels and channels (values in [0, 1]); 1 = a static clip, lower = flicker. It rewards
                         stillness too, so use it as a small-weight regulariser beside a content reward.
"""

from __future__ import annotations

import torch

from rewards.base import Reward, RewardOutput
from rewards.registry import load, register


@register("per_frame")
class PerFrame(Reward):
    input_format = "video"

    def __init__(self, reward: str | Reward = "ocr", reward_options: dict | None = None, every: int = 4,
                 reduce: str = "mean", batch_size: int = 8):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"per_frame: every must be an integer >= 1, got {every!r}")
        if reduce not in ("mean", "min"):
            raise ValueError(f"per_frame: reduce must be 'mean' or 'min', got {reduce!r}")
        self.image_reward = reward if isinstance(reward, Reward) else load(reward, **(reward_options or {}))
        if self.image_reward.input_format not in ("pil", "tensor"):
            raise ValueError(f"per_frame: {self.image_reward.name!r} is not an image reward "
                             f"(input_format {self.image_reward.input_format!r})")
        self.every, self.reduce, self.batch_size = every, reduce, int(batch_size)
        self.name = f"per_frame[{self.image_reward.name}]"

    def check_inputs(self, prompts, metadata=None) -> None:
        self.image_reward.check_inputs(prompts, metadata)

    def score(self, clips, prompts, metadata) -> RewardOutput:
        idx = list(range(0, clips.shape[1], self.every))
        n, k = clips.shape[0], len(idx)
        frames = clips[:, idx].flatten(0, 1)  # clip-major: clip i's frames are rows i*k .. i*k + k - 1
        out = self.image_reward(frames, [p for p in prompts for _ in idx],
                                None if metadata is None else [m for m in metadata for _ in idx])
        per = out.scores.view(n, k)
        scores = per.mean(1) if self.reduce == "mean" else per.min(1).values
        details = {"frame_scores": per}
        for key, v in out.details.items():
            if isinstance(v, torch.Tensor) and v.shape[:1] == (n * k,) and v.dtype.is_floating_point:
                details[key] = v.view(n, k, *v.shape[1:]).mean(1)
        return RewardOutput(scores, details)


@register("temporal_flickering")
class TemporalFlickering(Reward):
    name = "temporal_flickering"
    input_format = "video"
    batch_size = 64

    def score(self, clips, prompts, metadata) -> RewardOutput:
        if clips.shape[1] < 2:
            raise ValueError("temporal_flickering needs clips of at least 2 frames")
        mae = (clips[:, 1:] - clips[:, :-1]).abs().flatten(1).mean(1)
        return RewardOutput(1.0 - mae, {"mean_abs_diff": mae})
