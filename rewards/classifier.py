"""A calibrated image classifier p(y | x) on clean images: CTRL's differentiable reward (other_methods.md §1.5).

Architecture (the reference's compressibility classifier, scaled by `widths`): a stem conv, three residual blocks
(widths[0..2], strides 1 / 2 / 2, BatchNorm + ReLU), global average pooling and a linear head. Input: images
float [B, 3, H, W] in [0, 1], resized (bilinear) to `input_size`, normalised to [-1, 1]. Calibration: one scalar
temperature T (fitted on held-out data after training): p(y | x) = softmax(logits(x) / T).

Saved as a directory: `classifier.safetensors` (weights + "temperature") and `classifier.json`
({"labels": [...], "widths": [...], "input_size": N, "temperature": T, ...}). Train one with `genrl classifier`.

    from rewards.classifier import ImageClassifier
    clf = ImageClassifier.from_pretrained("runs/size-classifier")
    logp = clf.log_probs(images)                 # [B, n_labels], differentiable w.r.t. images
    reward = rewards.load("classifier", path="runs/size-classifier")
    out = reward(images, prompts, metadata=[{"condition": "large"}, ...])   # scores = p(requested label | x)
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rewards.base import Reward, RewardOutput, resolve_device
from rewards.registry import register

WEIGHTS, CONFIG = "classifier.safetensors", "classifier.json"


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ImageClassifier(nn.Module):
    """Residual CNN classifier with a calibration temperature (see module docstring)."""

    def __init__(self, labels: list[str], widths: tuple[int, ...] = (32, 64, 128), input_size: int = 32):
        super().__init__()
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"a classifier needs at least two distinct labels, got {labels}")
        if len(widths) != 3:
            raise ValueError(f"widths must have 3 entries (one per residual block), got {widths}")
        self.labels = [str(x) for x in labels]
        self.widths = tuple(int(w) for w in widths)
        self.input_size = int(input_size)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.blocks = nn.Sequential(_Block(widths[0], widths[0], 1), _Block(widths[0], widths[1], 2),
                                    _Block(widths[1], widths[2], 2))
        self.head = nn.Linear(widths[2], len(labels))
        self.register_buffer("temperature", torch.ones(()))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits [B, n_labels] of images [B, 3, H, W] in [0, 1]."""
        # contiguous (NCHW): oneDNN's weight gradient of the strided 1x1 skip conv corrupts the heap on some AVX2
        # CPUs when its input is channels-last, which images permuted from HWC arrays are (torch 2.14.1)
        x = images.float().contiguous()
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        h = self.blocks(self.stem(x * 2 - 1))
        return self.head(h.mean((2, 3)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated logits: logits / T."""
        return self.logits(images) / self.temperature

    def log_probs(self, images: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self(images), dim=-1)

    def label_index(self, names: list[str]) -> torch.Tensor:
        bad = sorted({str(n) for n in names} - set(self.labels))
        if bad:
            raise ValueError(f"label(s) {bad} are not classes of this classifier {self.labels}")
        return torch.tensor([self.labels.index(str(n)) for n in names], dtype=torch.long)

    # ---- persistence -----------------------------------------------------------------------------------------
    def config(self) -> dict:
        return {"labels": self.labels, "widths": list(self.widths), "input_size": self.input_size,
                "temperature": float(self.temperature)}

    def save_pretrained(self, directory: str, extra: dict | None = None) -> None:
        os.makedirs(directory, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  os.path.join(directory, WEIGHTS))
        with open(os.path.join(directory, CONFIG), "w") as f:
            json.dump({**self.config(), **(extra or {})}, f, indent=2)

    @classmethod
    def from_pretrained(cls, directory: str, device: str | torch.device = "cpu") -> ImageClassifier:
        cfg_path = os.path.join(directory, CONFIG)
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{directory} is not a classifier directory (no {CONFIG}); train one with "
                                    "`genrl classifier --data DIR --out DIR`")
        with open(cfg_path) as f:
            cfg = json.load(f)
        model = cls(cfg["labels"], tuple(cfg["widths"]), cfg["input_size"])
        model.load_state_dict(load_file(os.path.join(directory, WEIGHTS)))
        return model.to(device).eval().requires_grad_(False)


@register("classifier")
class ClassifierReward(Reward):
    """scores = p(y | x) of the label requested in metadata[i]["condition"]; details "log_p", "predicted"."""

    name = "classifier"
    input_format = "tensor"
    batch_size = 64

    def __init__(self, path: str, device: str | None = None):
        self.model = ImageClassifier.from_pretrained(path, resolve_device(device))

    @torch.no_grad()
    def score(self, samples, prompts, metadata) -> RewardOutput:
        wants = [(m or {}).get("condition") for m in (metadata or [None] * len(prompts))]
        if any(w is None for w in wants):
            raise ValueError("classifier reward: every sample needs metadata {'condition': LABEL} (the label to score)")
        idx = self.model.label_index(wants)
        dev = self.model.temperature.device
        logp = self.model.log_probs(samples.to(dev))
        lp = logp.gather(1, idx.to(dev)[:, None])[:, 0].cpu()
        pred = [self.model.labels[i] for i in logp.argmax(1).tolist()]
        return RewardOutput(lp.exp(), {"log_p": lp, "predicted": pred})
