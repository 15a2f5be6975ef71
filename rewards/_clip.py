"""Shared loading and embedding code for the transformers-CLIP rewards (pickscore, clip_score, aesthetic).

`ClipBackbone(model, processor, ...)` loads `CLIPModel.from_pretrained(model)` and
`AutoProcessor.from_pretrained(processor or model)`; both accept a hub id or a local directory and honour
`local_files_only`. Embeddings are the projected CLIP features (`get_*_features`), L2-normalised:
    e_img = proj(vision(x)) / |.|,   e_txt = proj(text(t)) / |.|,   cos = <e_img, e_txt>.
Images go through the processor's PIL backend (bicubic resize of the shortest side, centre crop, /255,
mean/std normalise), i.e. exactly the preprocessing of the published scorers for uint8 images.
"""

from __future__ import annotations

import torch

from rewards.base import resolve_device, resolve_dtype


def _features(out) -> torch.Tensor:
    # transformers >= 5 returns BaseModelOutputWithPooling (projected embedding in .pooler_output); 4.x a tensor
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_pretrained(cls, name_or_path: str, what: str, local_files_only: bool, **kwargs):
    try:
        return cls.from_pretrained(name_or_path, local_files_only=local_files_only, **kwargs)
    except OSError as e:
        hint = ("it is not in the local Hugging Face cache; download it once online or pass a local directory"
                if local_files_only else "pass a hub id or a local directory saved with save_pretrained")
        raise FileNotFoundError(f"cannot load {what} from {name_or_path!r}: {hint} ({str(e).splitlines()[0]})") from e


def _pil_backend() -> dict:
    """Ask for the PIL image processor (what the published scorers ran, on transformers 4.x): transformers 5
    defaults to a torchvision backend whose bicubic resize differs by up to ~0.004 per pixel."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


class ClipBackbone:
    def __init__(self, model: str, processor: str | None = None, *, device=None, dtype=None,
                 local_files_only: bool = False, need_text: bool = True):
        from transformers import AutoProcessor, CLIPModel

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = load_pretrained(CLIPModel, model, "CLIP model", local_files_only)
        self.model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.processor = load_pretrained(AutoProcessor, processor or model, "CLIP processor", local_files_only,
                                         **_pil_backend())
        if need_text and getattr(self.processor, "tokenizer", None) is None:
            raise ValueError(f"processor {processor or model!r} has no tokenizer; pass processor=<dir with one>")

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().exp()

    @torch.no_grad()
    def image_embeds(self, images) -> torch.Tensor:
        """L2-normalised projected image embeddings, float32 [N, D]."""
        pix = self.processor(images=images, return_tensors="pt")["pixel_values"]
        emb = _features(self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype))).float()
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def text_embeds(self, prompts: list[str], padding="max_length", max_length: int = 77) -> torch.Tensor:
        """L2-normalised projected text embeddings, float32 [N, D] (CLIP pools at the EOS token, so padding
        does not change the result)."""
        tok = self.processor(text=prompts, padding=padding, truncation=True, max_length=max_length,
                             return_tensors="pt")
        kw = {"input_ids": tok["input_ids"].to(self.device)}
        if "attention_mask" in tok:
            kw["attention_mask"] = tok["attention_mask"].to(self.device)
        emb = _features(self.model.get_text_features(**kw)).float()
        return emb / emb.norm(dim=-1, keepdim=True)
