"""The puzzles world's base model: a character tokenizer and a small bidirectional Gemma mask predictor.

The model is a plain transformers `GemmaForCausalLM` with `GemmaConfig(use_bidirectional_attention=True)` (full
attention: a mask predictor, the LLaDA architecture up to GeGLU vs SwiGLU), saved with `save_pretrained`
(safetensors) next to a `PreTrainedTokenizerFast` whose mask token is "[MASK]", so the generic dLLM adapter
(genrl/policies/dllm.py) loads it like any hub model.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECIALS = ["[PAD]", "[MASK]", "[EOS]"]
CHARS = list("0123456789+-*/()=|,>:") + list("abcdefghijklmnopqrstuvwxyz")


@dataclass
class PuzzlesModelConfig:
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 64


def build_tokenizer():
    """A character-level PreTrainedTokenizerFast (one token per character, decode joins without spaces)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[MASK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]",
                                   eos_token="[EOS]", unk_token="[MASK]", padding_side="left")


def build_model(cfg: PuzzlesModelConfig, vocab_size: int, pad_id: int, eos_id: int, seed: int = 0):
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    mcfg = GemmaConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        head_dim=cfg.hidden_size // cfg.heads, max_position_embeddings=cfg.max_positions,
        use_bidirectional_attention=True, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None,
        tie_word_embeddings=True,
    )
    return GemmaForCausalLM(mcfg)
