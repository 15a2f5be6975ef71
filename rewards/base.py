"""Core types of the reward zoo: RewardOutput, the Reward base class and image-input validation.

A reward is a callable `reward(samples, prompts, metadata=None) -> RewardOutput`. `scores` is a float32
tensor [N] (higher is better); `details` holds named per-sample extras (tensors [N] or lists of length N).
Images are accepted as a list of PIL images (RGB; L, P and RGBA are converted), a list of uint8 HxWx3 arrays
or one NxHxWx3 array, or a float tensor [N, 3, H, W] in [0, 1] (quantised with round(x*255) where a reward
needs PIL). Video rewards (`input_format = "video"`) take clips: a float tensor [N, F, 3, H, W] in [0, 1], a uint8
array [N, F, H, W, 3], or a list of clips (each a list of frames in any accepted image form); see `to_video`.
Text rewards (`input_format = "text"`) take a list of strings. Bad input raises a one-line
ValueError naming the problem and the fix. This package imports nothing from genrl or samplers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass
class RewardOutput:
    scores: torch.Tensor  # float32 [N]
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)


class Reward:
    """Base class. Subclasses set `name` and implement `score(images, prompts, metadata)`.

    `__call__` validates inputs (lengths, image types), converts images once to a list of RGB PIL images
    (`self.input_format = "pil"`) or a float tensor [N, 3, H, W] in [0, 1] (`"tensor"`), and batches
    internally by `batch_size` (`score` sees at most `batch_size` samples at a time).
    """

    name: str = "reward"
    input_format: str = "pil"  # "pil" | "tensor" | "video" | "voxels" | "asset" | "text"
    batch_size: int = 16

    def score(self, samples, prompts: list[str], metadata: list[dict] | None) -> RewardOutput:
        raise NotImplementedError

    def check_inputs(self, prompts: list[str], metadata: list[dict] | None = None) -> None:
        """Raise a one-line ValueError if these prompts / metadata cannot be scored (checked without samples, e.g.
        by a trainer before it starts). Default: anything goes."""

    def check_sample_format(self, sample_format: str) -> None:
        """Raise a one-line ValueError if this reward cannot score samples of `sample_format` ("image" | "video" |
        "voxels"), e.g. an image reward given clips without a frame rule."""
        if sample_format == "voxels" and self.input_format not in ("voxels", "asset"):
            raise ValueError(f"reward {self.name!r} does not score 3D voxel grids; use shapes3d, or score rendered "
                             f"views with rewards: {{multiview3d: 1.0}} and reward_options: {{multiview3d: "
                             f"{{image_reward: {self.name}}}}}")
        if sample_format != "voxels" and self.input_format == "voxels":
            raise ValueError(f"reward {self.name!r} scores 3D voxel grids but the model generates {sample_format}")
        if sample_format == "video" and self.input_format in ("pil", "tensor"):
            raise ValueError(f"reward {self.name!r} scores images but the model generates video; apply it to frames "
                             f"with rewards: {{per_frame: 1.0}} and reward_options: {{per_frame: {{reward: "
                             f"{self.name}, every: 4}}}}")
        if sample_format == "image" and self.input_format == "video":
            raise ValueError(f"reward {self.name!r} scores video clips but the model generates images; choose an "
                             "image reward")

    def __call__(self, samples, prompts, metadata=None) -> RewardOutput:
        prompts = _check_prompts(prompts)
        n = len(prompts)
        if samples is None or (isinstance(samples, list | tuple) and len(samples) == 0):
            raise ValueError(f"{self.name}: empty batch; pass at least one sample")
        if self.input_format == "text":
            samples = [str(s) for s in samples]
        else:
            convert = {"pil": to_pil, "video": to_video, "voxels": to_voxels}.get(self.input_format, to_tensor)
            samples = convert(samples)
        if len(samples) != n:
            raise ValueError(f"{self.name}: got {len(samples)} samples but {n} prompts; pass one prompt per sample")
        if n == 0:
            raise ValueError(f"{self.name}: empty batch; pass at least one sample")
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"{self.name}: metadata has {len(metadata)} entries for {n} samples")
        bs = max(1, int(self.batch_size))
        outs = []
        for i in range(0, n, bs):
            sl = slice(i, i + bs)
            outs.append(self.score(samples[sl], prompts[sl], None if metadata is None else list(metadata)[sl]))
        out = concat_outputs(outs)
        if out.scores.shape[0] != n:
            raise RuntimeError(f"{self.name}: produced {out.scores.shape[0]} scores for {n} samples")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> "cuda" when available, else "cpu"."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """None -> float32; accepts torch dtypes and names like "bf16", "float16"."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def concat_outputs(outs: list[RewardOutput]) -> RewardOutput:
    if len(outs) == 1:
        return outs[0]
    details: dict[str, Any] = {}
    for k in outs[0].details:
        vals = [o.details[k] for o in outs]
        details[k] = torch.cat([torch.as_tensor(v) for v in vals]) if isinstance(vals[0], torch.Tensor) else sum(
            (list(v) for v in vals), []
        )
    return RewardOutput(torch.cat([o.scores for o in outs]), details)


def _check_prompts(prompts) -> list[str]:
    if prompts is None:
        raise ValueError("prompts is None; pass one prompt string per sample (e.g. [''] * n for a reward that "
                         "ignores prompts)")
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings (one per sample), not a single string")
    prompts = list(prompts)
    for p in prompts:
        if not isinstance(p, str):
            raise ValueError(f"prompts must be strings, got {type(p).__name__}")
    return prompts


def to_pil(images) -> list[Image.Image]:
    """Convert any accepted image batch to a list of RGB PIL images (see module docstring)."""
    if isinstance(images, torch.Tensor):
        return [Image.fromarray(a) for a in _tensor_to_uint8(images)]
    if isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim != 4):
        raise ValueError("pass a batch: a list of images, an NxHxWx3 uint8 array or an [N,3,H,W] tensor "
                         "(wrap a single image in a list)")
    if isinstance(images, np.ndarray):
        images = list(images)
    out = []
    for i, im in enumerate(images):
        if isinstance(im, Image.Image):
            if im.mode not in ("RGB", "RGBA", "L", "P"):
                raise ValueError(f"image {i} has mode {im.mode!r}; convert it with image.convert('RGB')")
            out.append(im.convert("RGB"))
        elif isinstance(im, np.ndarray):
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(
                    f"image {i}: numpy images must be uint8 HxWx3 (RGB), got dtype {im.dtype} shape {im.shape}; "
                    "convert with (x * 255).round().astype(np.uint8) or np.stack([g] * 3, -1) for grayscale"
                )
            out.append(Image.fromarray(im))
        elif isinstance(im, torch.Tensor):
            if im.ndim != 3:
                raise ValueError(f"image {i}: tensor images must be [3, H, W] floats in [0, 1], got {tuple(im.shape)}")
            out.append(Image.fromarray(_tensor_to_uint8(im[None])[0]))
        else:
            raise ValueError(
                f"image {i} has type {type(im).__name__}; pass PIL images, uint8 HxWx3 arrays or a float tensor "
                "[N,3,H,W] in [0,1]"
            )
    return out


def to_tensor(images) -> torch.Tensor:
    """Convert any accepted image batch to a float32 tensor [N, 3, H, W] in [0, 1]."""
    if isinstance(images, torch.Tensor):
        _check_float_tensor(images)
        return images.float()
    pils = to_pil(images)
    if not pils:
        return torch.zeros(0, 3, 1, 1)
    sizes = {p.size for p in pils}
    if len(sizes) > 1:
        raise ValueError(f"images have different sizes {sorted(sizes)}; resize them to one size first")
    arr = np.stack([np.asarray(p, dtype=np.uint8) for p in pils])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def to_video(clips) -> torch.Tensor:
    """Convert a batch of clips to a float32 tensor [N, F, 3, H, W] in [0, 1]: a float tensor of that shape, a uint8
    array [N, F, H, W, 3], or a list of clips, each a list of frames (PIL, uint8 HxWx3) or a tensor [F, 3, H, W]."""
    if isinstance(clips, torch.Tensor):
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"video tensors must have shape [N, F, 3, H, W] (frames, then channels), got "
                             f"{tuple(clips.shape)}; permute a [N, 3, F, H, W] tensor with x.permute(0, 2, 1, 3, 4)")
        _check_float_tensor(clips.flatten(0, 1))
        return clips.float()
    if isinstance(clips, np.ndarray):
        if clips.ndim != 5 or clips.dtype != np.uint8 or clips.shape[-1] != 3:
            raise ValueError(f"video arrays must be uint8 [N, F, H, W, 3], got dtype {clips.dtype} shape {clips.shape}")
        return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 255.0
    out = []
    for i, clip in enumerate(clips):
        frames = to_tensor(clip if not isinstance(clip, np.ndarray) else list(clip))
        if out and frames.shape != out[0].shape:
            raise ValueError(f"clip {i} has shape {tuple(frames.shape)} but clip 0 has {tuple(out[0].shape)}; "
                             "pass clips with the same number of frames and size")
        out.append(frames)
    if not out:
        raise ValueError("empty batch of clips; pass at least one clip")
    return torch.stack(out)


def to_voxels(grids) -> torch.Tensor:
    """Convert a batch of voxel grids to float32 [N, 4, G, G, G] (occupancy + RGB in [0, 1]): a tensor or array of
    that shape, or a list of [4, G, G, G] grids."""
    if not isinstance(grids, torch.Tensor):
        if isinstance(grids, list | tuple) and grids and not isinstance(grids[0], np.ndarray | torch.Tensor):
            raise ValueError(f"voxel grids must be tensors or arrays [4, G, G, G], got {type(grids[0]).__name__}")
        grids = torch.stack([torch.as_tensor(g) for g in grids]) if isinstance(grids, list | tuple) else \
            torch.as_tensor(grids)
    if grids.ndim != 5 or grids.shape[1] != 4 or len(set(grids.shape[2:])) != 1 or grids.shape[2] == 0:
        raise ValueError(f"voxel grids must have shape [N, 4, G, G, G] (occupancy + RGB, a cubic grid), got "
                         f"{tuple(grids.shape)}")
    grids = grids.float()
    bad = ~torch.isfinite(grids).flatten(1).all(1)
    if bad.any():
        raise ValueError(f"voxel grid(s) {torch.nonzero(bad).reshape(-1)[:8].tolist()} hold NaN/inf; drop or fix "
                         "them before scoring")
    if grids.min() < -1e-3 or grids.max() > 1 + 1e-3:
        raise ValueError(f"voxel grid values must lie in [0, 1], got [{grids.min():.3f}, {grids.max():.3f}]; map "
                         "[-1, 1] with (x + 1) / 2")
    return grids


def _check_float_tensor(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"image tensors must have shape [N, 3, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"image tensors must be float in [0, 1], got dtype {x.dtype}; divide uint8 by 255")
    bad = ~torch.isfinite(x.detach()).flatten(1).all(1)
    if bad.any():
        raise ValueError(f"image tensor has non-finite values (NaN/inf) in sample(s) "
                         f"{torch.nonzero(bad).reshape(-1)[:8].tolist()}; drop or fix them before scoring")
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError(
            f"image tensor values must lie in [0, 1], got [{x.min():.3f}, {x.max():.3f}]; map [-1,1] with (x+1)/2"
        )


def _tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    _check_float_tensor(x)
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
