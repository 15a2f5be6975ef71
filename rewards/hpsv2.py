"""HPS v2.1 (Human Preference Score, Wu et al. 2023): an open_clip ViT-H-14 fine-tuned on HPD v2.

    x     = ResizeMaxSize(224): scale the longest side to 224 (bicubic), pad centred to 224x224 with black,
            then /255 and OpenAI-CLIP mean/std normalisation (HPSv2's `preprocess_val`)
    score = <e_img, e_txt> with both open_clip embeddings L2-normalised; no logit scale (~0.2-0.35)

Weights: `xswu/HPSv2/HPS_v2.1_compressed.pt` ({"state_dict": ...} for open_clip "ViT-H-14"). `checkpoint=` takes
that hub path, a local file, or a directory holding HPS_v2.1_compressed.pt; `model=` is the open_clip
architecture name. The architecture is built with open_clip.create_model(model, pretrained=<local checkpoint>),
which loads the state dict with torch.load(weights_only=True); no base LAION weights are downloaded (the
checkpoint overwrites all of them anyway). The tokenizer is open_clip's bundled BPE (offline).
"""

from __future__ import annotations

import torch
from PIL import Image

from rewards._hub import resolve_file
from rewards.base import Reward, RewardOutput, resolve_device, resolve_dtype
from rewards.registry import register

ARCH = "ViT-H-14"
CHECKPOINT = "xswu/HPSv2"
CHECKPOINT_FILE = "HPS_v2.1_compressed.pt"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_max_size(image: Image.Image, size: int, fill=(0, 0, 0)) -> Image.Image:
    """HPSv2's ResizeMaxSize: longest side -> size (bicubic, rounded), centred on a size x size `fill` canvas."""
    w, h = image.size
    scale = size / float(max(w, h))
    nw, nh = round(w * scale), round(h * scale)
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(image, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def preprocess(images: list[Image.Image], size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    import numpy as np

    arr = np.stack([np.asarray(resize_max_size(im.convert("RGB"), size), dtype=np.float32) for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@register("hpsv2")
class HPSv2(Reward):
    name = "hpsv2"
    input_format = "pil"

    def __init__(self, checkpoint: str = CHECKPOINT, model: str = ARCH, *, device=None, dtype=None,
                 batch_size: int = 16, local_files_only: bool = False):
        try:
            import open_clip
        except ImportError as e:
            raise ImportError("the hpsv2 reward needs open-clip-torch (and torchvision): "
                              "pip install 'genrl[rewards]'") from e
        path = resolve_file(checkpoint, CHECKPOINT_FILE, local_files_only=local_files_only, what="HPS v2.1 checkpoint")
        if model not in open_clip.list_models():
            raise ValueError(f"hpsv2: unknown open_clip architecture {model!r}; use 'ViT-H-14' (HPS v2.1)")
        self.device, self.dtype = resolve_device(device), resolve_dtype(dtype)
        self.model = open_clip.create_model(model, pretrained=path, precision="fp32", device="cpu",
                                            load_weights=True, require_pretrained=True)
        self.model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        self.image_size = int(self.model.visual.image_size[0] if isinstance(self.model.visual.image_size, tuple)
                              else self.model.visual.image_size)
        self.mean, self.std = tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, images, prompts, metadata=None) -> RewardOutput:
        x = preprocess(images, self.image_size, self.mean, self.std).to(self.device, self.dtype)
        img = self.model.encode_image(x, normalize=True).float()
        txt = self.model.encode_text(self.tokenizer(list(prompts)).to(self.device), normalize=True).float()
        return RewardOutput((img * txt).sum(-1).cpu())
