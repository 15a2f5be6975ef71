"""Animated GIFs of environment episodes (a grid of episodes playing side by side)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch


def save_episode_gif(episodes: list[torch.Tensor], path: str, scores: list[float] | None = None,
                     title: str | None = None, cols: int = 4, ms_per_frame: int = 80) -> str:
    """episodes: uint8 [T_i, S, S, 3] each; shorter episodes hold their last frame. A green border marks
    score > 0.5 (success), red otherwise. Returns `path`."""
    from PIL import Image, ImageDraw

    n = len(episodes)
    s = int(episodes[0].shape[1])
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    top = 14 if title else 0
    length = max(int(e.shape[0]) for e in episodes)
    frames = []
    for t in range(length):
        canvas = np.full((top + rows * (s + 4), cols * (s + 4), 3), 255, dtype=np.uint8)
        for i, ep in enumerate(episodes):
            r, c = divmod(i, cols)
            y, x = top + r * (s + 4), c * (s + 4)
            ok = scores is not None and scores[i] > 0.5
            canvas[y : y + s + 4, x : x + s + 4] = (60, 180, 75) if ok else (200, 60, 60)
            canvas[y + 2 : y + 2 + s, x + 2 : x + 2 + s] = ep[min(t, ep.shape[0] - 1)].cpu().numpy()
        img = Image.fromarray(canvas)
        if title:
            ImageDraw.Draw(img).text((2, 1), title[:80], fill=(0, 0, 0))
        frames.append(img.convert("P", palette=Image.Palette.ADAPTIVE))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path
