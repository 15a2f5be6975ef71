"""The shapes-world base model's parts, built from real library classes, and its pipeline directory layout.

  transformer/   diffusers SD3Transformer2DModel in PIXEL space (in/out channels 3, values in [-1, 1])
  text_encoder/  transformers CLIPTextModelWithProjection (per-token hidden states -> encoder_hidden_states,
                 projected EOS embedding -> pooled_projections)
  tokenizer/     word-level tokenizer over the world's vocabulary (tokenizers WordLevel in a
                 PreTrainedTokenizerFast), fully offline
  model_index.json  {"_class_name": "ShapesPipeline", "prediction": "x0" | "v", ...}; load_policy finds the
                 adapter by the class name; "prediction" says what the transformer outputs (absent = "v")
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from rewards.shapes.world import WORDS

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
MAX_TOKENS = 16  # longest grammar prompt is 11 words + BOS/EOS
T_MIN = 0.05  # x0-prediction: the training loss's velocity denominator is max(t, T_MIN) (JiT)


@dataclass
class ShapesModelConfig:
    resolution: int = 32
    patch_size: int = 4
    num_layers: int = 6
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4


def build_tokenizer(words: tuple[str, ...] = WORDS, max_tokens: int = MAX_TOKENS):
    """A word-level PreTrainedTokenizerFast over `words` (lower-cased, [BOS] ... [EOS], right padding)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([PAD, UNK, BOS, EOS, *words])}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token=PAD, bos_token=BOS, eos_token=EOS,
        model_max_length=max_tokens, padding_side="right",
    )


def build_text_encoder(cfg: ShapesModelConfig, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tc = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=2 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, max_position_embeddings=MAX_TOKENS,
        projection_dim=cfg.text_hidden, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModelWithProjection(tc)


def build_transformer(cfg: ShapesModelConfig):
    from diffusers import SD3Transformer2DModel

    inner = cfg.num_attention_heads * cfg.attention_head_dim
    return SD3Transformer2DModel(
        sample_size=cfg.resolution, patch_size=cfg.patch_size, in_channels=3, out_channels=3,
        num_layers=cfg.num_layers, attention_head_dim=cfg.attention_head_dim,
        num_attention_heads=cfg.num_attention_heads, joint_attention_dim=cfg.text_hidden,
        caption_projection_dim=inner, pooled_projection_dim=cfg.text_hidden,
        pos_embed_max_size=cfg.resolution // cfg.patch_size,
    )


def build_model(cfg: ShapesModelConfig | None = None, seed: int = 0):
    """(transformer, text_encoder, tokenizer) with seeded random weights."""
    import torch

    cfg = cfg or ShapesModelConfig()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(cfg, tokenizer)
    transformer = build_transformer(cfg)
    return transformer, text_encoder, tokenizer


def save_pipeline(directory: str, transformer, text_encoder, tokenizer, extra: dict | None = None) -> None:
    """Write the ShapesPipeline directory (save_pretrained layout, safetensors)."""
    os.makedirs(directory, exist_ok=True)
    transformer.save_pretrained(os.path.join(directory, "transformer"))
    text_encoder.save_pretrained(os.path.join(directory, "text_encoder"))
    tokenizer.save_pretrained(os.path.join(directory, "tokenizer"))
    index = {
        "_class_name": "ShapesPipeline",
        "_genrl_version": "0.1.0",
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "resolution": int(transformer.config.sample_size),
        **(extra or {}),
    }
    with open(os.path.join(directory, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)


def config_dict(cfg: ShapesModelConfig) -> dict:
    return asdict(cfg)
