"""ImageReward (Xu et al. 2023): BLIP ViT-L image encoder + BERT-base text encoder with cross-attention to the
image tokens + an MLP head, trained on human preference rankings.

    x     = Resize(224, bicubic) -> CenterCrop(224) -> /255 -> OpenAI-CLIP mean/std
    h     = BERT(prompt tokens; cross-attending to ViT(x) tokens)[CLS]       (max_length=35, padded)
    r     = MLP(h),  MLP = Linear(768,1024) Drop Linear(1024,128) Drop Linear(128,64) Drop Linear(64,16) Linear(16,1)
    score = (r - 0.16717362830052426) / 1.0333394966054072                   (ImageReward's normalisation)

The `image-reward` package does not import with transformers 5, so the architecture is rebuilt here from
transformers' own BLIP modules (`BlipVisionModel` = BLIP's ViT, `BlipTextModel` = BLIP's `med.py` BERT with
cross-attention) and the original checkpoint's keys are renamed onto them (`convert_state_dict`).

Weights: `THUDM/ImageReward` files `ImageReward.pt` (state dict, loaded with weights_only=True) and
`med_config.json` (BERT config). `checkpoint=` takes that repo id, a local directory holding both files, or the
.pt path (then `med_config=` names the JSON). The tokenizer is BERT's (`tokenizer="bert-base-uncased"` or a local
directory with vocab.txt) plus the [DEC]/[ENC] tokens BLIP adds. Vision tower shape is read from the checkpoint;
its head count is width // 64 (16 for ViT-L) unless `vision_heads=` says otherwise.
"""

from __future__ import annotations

import json
import os
import re

import torch

from rewards._hub import load_state_dict, resolve_file
from rewards.aesthetic import AestheticMLP
from rewards.base import Reward, RewardOutput, resolve_device, resolve_dtype
from rewards.registry import register

CHECKPOINT = "THUDM/ImageReward"
CHECKPOINT_FILE = "ImageReward.pt"
MED_CONFIG_FILE = "med_config.json"
TOKENIZER = "bert-base-uncased"
MEAN, STD = 0.16717362830052426, 1.0333394966054072
MAX_LENGTH = 35
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_VISION_RENAMES = [  # BLIP/timm ViT -> transformers BlipVisionModel
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
]


# ImageReward's score head is LAION's aesthetic MLP (same layers, same parameter names).
ImageRewardMLP = AestheticMLP


def convert_state_dict(sd: dict) -> tuple[dict, dict, dict]:
    """Split an ImageReward checkpoint into (vision, text, mlp) state dicts with transformers key names."""
    vision, text, mlp = {}, {}, {}
    for key, value in sd.items():
        if key.startswith("blip.visual_encoder."):
            k = key[len("blip.visual_encoder."):]
            for pat, rep in _VISION_RENAMES:
                if re.search(pat, k):
                    vision[re.sub(pat, rep, k)] = value
                    break
        elif key.startswith("blip.text_encoder."):
            k = key[len("blip.text_encoder."):]
            if not k.startswith("pooler.") and not k.endswith("position_ids"):
                text[k] = value
        elif key.startswith("mlp."):
            mlp[key[len("mlp."):]] = value
    for part, got in (("blip.visual_encoder", vision), ("blip.text_encoder", text), ("mlp", mlp)):
        if not got:
            raise ValueError(f"ImageReward checkpoint has no {part}.* weights; is it ImageReward.pt?")
    return vision, text, mlp


def vision_config_from(sd: dict, heads: int | None = None):
    from transformers import BlipVisionConfig

    width = sd["embeddings.class_embedding"].shape[-1]
    patch = sd["embeddings.patch_embedding.weight"].shape[-1]
    n_pos = sd["embeddings.position_embedding"].shape[1] - 1
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers."))
    return BlipVisionConfig(
        hidden_size=width, intermediate_size=sd["encoder.layers.0.mlp.fc1.weight"].shape[0], num_hidden_layers=depth,
        num_attention_heads=heads or max(1, width // 64), image_size=int(round(n_pos**0.5)) * patch, patch_size=patch,
        hidden_act="gelu", layer_norm_eps=1e-6, attention_dropout=0.0,
    )


def text_config_from(med: dict, encoder_width: int):
    """BLIP's med_config (a BertConfig JSON) -> BlipTextConfig; BLIP sets encoder_width to the ViT width."""
    from transformers import BlipTextConfig

    vocab = med["vocab_size"]
    ids = {k: med.get(k) for k in ("bos_token_id", "eos_token_id", "sep_token_id")}
    ids = {k: (v if isinstance(v, int) and v < vocab else None) for k, v in ids.items()}
    return BlipTextConfig(
        vocab_size=vocab, hidden_size=med["hidden_size"], encoder_hidden_size=encoder_width,
        intermediate_size=med["intermediate_size"], num_hidden_layers=med["num_hidden_layers"],
        num_attention_heads=med["num_attention_heads"], max_position_embeddings=med["max_position_embeddings"],
        hidden_act=med.get("hidden_act", "gelu"), layer_norm_eps=med.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=med.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=med.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=med.get("pad_token_id", 0), is_decoder=True,  # is_decoder=True builds the cross-attention
        **ids,
    )


def preprocess(images, size: int) -> torch.Tensor:
    """ImageReward's transform: Resize(size, bicubic) of the short side, CenterCrop(size), ToTensor, Normalize."""
    try:
        from torchvision import transforms as T
    except ImportError as e:
        raise ImportError("the imagereward reward needs torchvision: pip install 'genrl[rewards]'") from e

    tf = T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
        lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(OPENAI_MEAN, OPENAI_STD),
    ])
    return torch.stack([tf(im) for im in images])


@register("imagereward")
class ImageReward(Reward):
    name = "imagereward"
    input_format = "pil"

    def __init__(self, checkpoint: str = CHECKPOINT, med_config: str | None = None, tokenizer: str = TOKENIZER, *,
                 vision_heads: int | None = None, device=None, dtype=None, batch_size: int = 16,
                 local_files_only: bool = False):
        from transformers import BertTokenizer, BlipTextModel, BlipVisionModel

        self.device, self.dtype = resolve_device(device), resolve_dtype(dtype)
        ckpt = resolve_file(checkpoint, CHECKPOINT_FILE, local_files_only=local_files_only,
                            what="ImageReward checkpoint")
        if med_config is None:  # next to the checkpoint: same local dir, or the same hub repo
            local = os.path.join(os.path.dirname(ckpt), MED_CONFIG_FILE)
            med_config = local if os.path.isfile(local) else checkpoint
        med_path = resolve_file(med_config, MED_CONFIG_FILE, local_files_only=local_files_only,
                                what="ImageReward med_config.json")
        with open(med_path) as f:
            med = json.load(f)

        vision_sd, text_sd, mlp_sd = convert_state_dict(load_state_dict(ckpt))
        vcfg = vision_config_from(vision_sd, vision_heads)
        self.vision = BlipVisionModel(vcfg)
        self.text = BlipTextModel(text_config_from(med, vcfg.hidden_size), add_pooling_layer=False)
        self.mlp = ImageRewardMLP(mlp_sd["layers.0.weight"].shape[1])
        for module, sd, what in ((self.vision, vision_sd, "vision"), (self.text, text_sd, "text"),
                                 (self.mlp, mlp_sd, "mlp")):
            missing, unexpected = module.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(f"ImageReward {what} weights do not match: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")
        for m in (self.vision, self.text, self.mlp):
            m.to(self.device, self.dtype).eval().requires_grad_(False)
        self.mlp.float()  # ImageReward runs the head in fp32 (`txt_features.float()`)
        self.image_size = vcfg.image_size

        try:
            self.tokenizer = BertTokenizer.from_pretrained(tokenizer, local_files_only=local_files_only)
        except OSError as e:
            raise FileNotFoundError(f"cannot load the BERT tokenizer {tokenizer!r}; pass tokenizer=<dir with "
                                    "vocab.txt> (bert-base-uncased vocabulary)") from e
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # as BLIP's init_tokenizer()
        self.tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, images, prompts, metadata=None) -> RewardOutput:
        x = preprocess(images, self.image_size).to(self.device, self.dtype)
        image_embeds = self.vision(pixel_values=x).last_hidden_state
        tok = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                             return_tensors="pt")
        out = self.text(
            input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
            is_decoder=False,
        )
        raw = self.mlp(out.last_hidden_state[:, 0, :].float()).squeeze(-1).cpu()
        return RewardOutput((raw - MEAN) / STD, {"raw": raw})
