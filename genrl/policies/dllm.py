"""Adapter for any transformers mask predictor as a masked diffusion LM policy (LLaDA-style dLLMs).

Loads with `from_pretrained(path_or_hub_id)`: natively a bidirectional Gemma (`GemmaConfig(
use_bidirectional_attention=True)`, e.g. the puzzles world's base model) or `ModernBertForMaskedLM`; LLaDA and
other remote-code models through `trust_remote_code=True`, used ONLY when the config asks for it
(`model.trust_remote_code: true`). The mask token comes from `mask_token_id=` (option), else the tokenizer's
mask token, else the model config's `mask_token_id`.

Masked diffusion convention: t = 1 all response tokens masked, t = 0 clean (see genrl/policies/masked_lm.py).
LoRA via peft (all linear layers by default); the reference model is the base with the adapter disabled.
save_trainable writes what peft / transformers load back: LoRA -> adapter_model.safetensors +
adapter_config.json (`PeftModel.from_pretrained(base, dir)`); full fine-tuning -> a `save_pretrained` model
directory with its tokenizer.
"""

from __future__ import annotations

import contextlib
import json
import os

import torch

from genrl.policies.masked_lm import MaskedLMPolicy

_AUTO_CLASSES = ("AutoModelForMaskedLM", "AutoModelForCausalLM", "AutoModel")


def _local_config(path: str) -> dict | None:
    f = os.path.join(path, "config.json")
    if os.path.isfile(f):
        with open(f) as fh:
            return json.load(fh)
    return None


def is_transformers_dir(path: str) -> bool:
    """A local transformers model directory (config.json, no diffusers model_index.json)."""
    return os.path.isdir(path) and _local_config(path) is not None and \
        not os.path.isfile(os.path.join(path, "model_index.json"))


def _needs_remote_code(raw: dict) -> bool:
    from transformers import CONFIG_MAPPING

    return bool(raw.get("auto_map")) and raw.get("model_type") not in CONFIG_MAPPING


def _auto_class(raw: dict, trust_remote_code: bool):
    import transformers

    if trust_remote_code and raw.get("auto_map"):
        for name in _AUTO_CLASSES:
            if name in raw["auto_map"]:
                return getattr(transformers, name)
    arch = (raw.get("architectures") or [""])[0]
    return transformers.AutoModelForMaskedLM if arch.endswith("MaskedLM") else transformers.AutoModelForCausalLM


class TransformersDLLM(MaskedLMPolicy):
    def __init__(self, model, tokenizer, mask_id: int, lora_rank: int = 32, lora_alpha: float | None = None,
                 chat_template: bool = False):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.mask_id = int(mask_id)
        self.eos_id = int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else mask_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)
        cfg = model.config
        self.max_length = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "max_sequence_length", None)
        # Gemma-style decoders build a causal 2-D padding mask even in bidirectional mode: pass a 4-D one instead
        self._mask_4d = bool(getattr(cfg, "use_bidirectional_attention", False))
        self.lora_rank, self.lora_alpha, self.chat_template = int(lora_rank), lora_alpha, bool(chat_template)

    @classmethod
    def from_pretrained(cls, path: str, lora_rank: int = 32, lora_alpha: float | None = None,
                        lora_dropout: float = 0.0, lora_targets: list[str] | str | None = None,
                        trust_remote_code: bool = False, mask_token_id: int | None = None,
                        torch_dtype: str | None = None, chat_template: bool = False,
                        local_files_only: bool = False) -> TransformersDLLM:
        from transformers import AutoConfig, AutoTokenizer

        raw = _local_config(path) if os.path.isdir(path) else None
        if os.path.isdir(path) and raw is None:
            raise FileNotFoundError(f"{path} is not a transformers model directory (no config.json)")
        if raw is not None and _needs_remote_code(raw) and not trust_remote_code:
            raise ValueError(f"{path} needs its own modelling code (config.json auto_map, model_type "
                             f"{raw.get('model_type')!r}); set model.trust_remote_code: true if you trust it")
        kw = {"trust_remote_code": bool(trust_remote_code), "local_files_only": local_files_only}
        try:
            if raw is None:
                raw = AutoConfig.from_pretrained(path, **kw).to_dict()
            tok = AutoTokenizer.from_pretrained(path, **kw)
            dtype = getattr(torch, torch_dtype) if torch_dtype else None
            model = _auto_class(raw, trust_remote_code).from_pretrained(path, dtype=dtype, **kw)
        except (OSError, ValueError) as e:
            msg = str(e)
            if "trust_remote_code" in msg and not trust_remote_code:
                raise ValueError(f"{path} needs its own modelling code; set model.trust_remote_code: true if you "
                                 "trust it") from None
            raise
        if "use_bidirectional_attention" in model.config.to_dict() and not model.config.use_bidirectional_attention:
            raise ValueError(f"{path} is a causal language model, not a mask predictor; masked diffusion needs full "
                             "attention (e.g. GemmaConfig(use_bidirectional_attention=True))")
        mask_id = mask_token_id if mask_token_id is not None else tok.mask_token_id
        if mask_id is None:
            mask_id = getattr(model.config, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(f"{path} has no mask token (tokenizer.mask_token and config.mask_token_id are unset); "
                             "set model.options.mask_token_id=ID (LLaDA: 126336)")
        model.requires_grad_(False)
        if lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            from genrl.lean_lora import make_lean

            targets = lora_targets or "all-linear"
            model = get_peft_model(model, LoraConfig(
                r=int(lora_rank), lora_alpha=float(lora_alpha if lora_alpha is not None else 2 * lora_rank),
                lora_dropout=float(lora_dropout), target_modules=targets, bias="none"))
            make_lean(model)
        else:
            model.requires_grad_(True)
        return cls(model, tok, int(mask_id), lora_rank, lora_alpha, chat_template)

    # ---- tokens -------------------------------------------------------------------------------------------
    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        if self.chat_template:
            return [list(self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                                            add_generation_prompt=True)) for p in prompts]
        return [list(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]

    def decode(self, response: torch.Tensor) -> list[str]:
        out = []
        for row in response.tolist():
            if self.eos_id in row:
                row = row[:row.index(self.eos_id)]
            out.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return out

    def logits(self, tokens: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if keys is not None and not bool(keys.all()):
            mask = keys[:, None, None, :].expand(-1, 1, keys.shape[1], -1) if self._mask_4d else keys.long()
        out = self.model(input_ids=tokens, attention_mask=mask) if mask is not None else self.model(input_ids=tokens)
        return out.logits.float()

    # ---- trainable / reference ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def disable_adapter(self):
        """Inside: the frozen base model (LoRA disabled): the reference policy."""
        if self.lora_rank <= 0:
            raise ValueError("the reference (adapter disabled) needs LoRA; set model.lora_rank > 0")
        with self.model.disable_adapter():
            yield self

    def save_trainable(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        if self.lora_rank <= 0:
            self.tokenizer.save_pretrained(directory)

    def load_trainable(self, directory: str) -> None:
        from safetensors.torch import load_file

        if self.lora_rank > 0:
            f = os.path.join(directory, "adapter_model.safetensors")
            if not os.path.isfile(f):
                raise FileNotFoundError(f"{directory} has no adapter_model.safetensors (a LoRA saved by genrl)")
            from peft import set_peft_model_state_dict

            res = set_peft_model_state_dict(self.model, load_file(f, device=str(self.device)))
            if getattr(res, "unexpected_keys", None):
                raise ValueError(f"{f} does not match this model's LoRA layout; load it with the rank it was "
                                 "trained with")
        else:
            from transformers.modeling_utils import load_state_dict

            f = os.path.join(directory, "model.safetensors")
            if not os.path.isfile(f):
                raise FileNotFoundError(f"{directory} has no model.safetensors")
            self.model.load_state_dict(load_state_dict(f), strict=False)
