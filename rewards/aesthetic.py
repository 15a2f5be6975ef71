"""LAION improved aesthetic predictor ("sac+logos+ava1-l14-linearMSE"), used by DDPO, Flow-GRPO, DiffusionNFT.

    e = CLIP ViT-L/14 image embedding (768-d, projected), L2-normalised
    score = MLP(e),  MLP = Linear(768,1024) Drop Linear(1024,128) Drop Linear(128,64) Drop Linear(64,16)
                           Linear(16,1)   (no activations; dropout is inactive at eval)
Scores lie on a ~1-10 scale (typical photos 4-7).

Weights: CLIP `openai/clip-vit-large-patch14`; head `trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth`
(the same weights as sac+logos+ava1-l14-linearMSE.pth). `head=` takes a local .pth/.pt/.safetensors file, a
directory holding aesthetic-model.pth, or "org/repo[/file]" on the hub. Loaded with weights_only=True.
"""

from __future__ import annotations

import torch
from torch import nn

from rewards._clip import ClipBackbone
from rewards._hub import load_state_dict, resolve_file
from rewards.base import Reward, RewardOutput
from rewards.registry import register

CLIP_MODEL = "openai/clip-vit-large-patch14"
HEAD = "trl-lib/ddpo-aesthetic-predictor"
HEAD_FILE = "aesthetic-model.pth"


class AestheticMLP(nn.Module):
    """The LAION head; parameter names (layers.0/2/4/6/7) match the published .pth."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("aesthetic")
class Aesthetic(Reward):
    name = "aesthetic"
    input_format = "pil"

    def __init__(self, model: str = CLIP_MODEL, processor: str | None = None, head: str = HEAD, *, device=None,
                 dtype=None, batch_size: int = 32, local_files_only: bool = False):
        self.clip = ClipBackbone(model, processor, device=device, dtype=dtype, local_files_only=local_files_only,
                                 need_text=False)
        sd = load_state_dict(resolve_file(head, HEAD_FILE, local_files_only=local_files_only,
                                          what="aesthetic head"))
        if "layers.0.weight" not in sd:
            raise ValueError(f"aesthetic head {head!r} has keys {sorted(sd)[:4]}...; expected the LAION MLP "
                             "(layers.0.weight ... layers.7.bias)")
        self.mlp = AestheticMLP(sd["layers.0.weight"].shape[1])
        self.mlp.load_state_dict(sd)
        dim = self.clip.model.config.projection_dim
        if self.mlp.layers[0].in_features != dim:
            raise ValueError(f"aesthetic head expects {self.mlp.layers[0].in_features}-d embeddings but CLIP "
                             f"{model!r} gives {dim}-d; use a ViT-L/14 CLIP")
        self.mlp.to(self.clip.device).eval().requires_grad_(False)
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, images, prompts, metadata=None) -> RewardOutput:
        return RewardOutput(self.mlp(self.clip.image_embeds(images)).squeeze(-1).cpu())
