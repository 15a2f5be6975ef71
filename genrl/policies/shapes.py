"""ShapesPolicy: the shapes world's pixel-space SD3Transformer2DModel + CLIP text encoder as a FlowPolicy.

Time convention: t = sigma in [0, 1], t = 1 is pure noise, t = 0 is data, x_t = (1 - t) x0 + t eps, velocity
v = eps - x0. `velocity(x, sigma, cond)` passes timestep = 1000 * sigma to the transformer (as SD3). A model
saved with `"prediction": "x0"` in model_index.json outputs the clean image x0_hat; velocity() returns the
implied v = (x_t - x0_hat) / sigma (exact identity of the linear path), so every sampler and trainer sees velocity.
Pixel space: x in [-1, 1] (3 x R x R); `decode` maps to [0, 1]. The text encoder is frozen; encodings are cached
per unique prompt. CFG: `encode([""])` is the unconditional embedding (the base model was trained with 10% of
prompts dropped to ""). Trainable: peft LoRA on the transformer's attention (to_q/k/v, to_out.0, add_q/k/v_proj,
to_add_out; `lora_ff=True` adds the feed-forwards) with `lora_rank` > 0, or full fine-tuning with
`lora_rank=0` (a frozen copy of the transformer is then the reference for `disable_adapter()`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os

import torch
from safetensors.torch import load_file, save_file

from genrl.lora import adapters_disabled
from genrl.policies.base import Cond, FlowPolicy
from genrl.policies.condition import condition_disabled, condition_scope, load_condition, save_condition

ATTN_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
FF_TARGETS = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")
LORA_FILE, FULL_FILE, META_FILE = "lora.safetensors", "transformer.safetensors", "trainable.json"


class ShapesPolicy(FlowPolicy):
    world = "shapes"  # the embedded world (genrl.shapes.evaluate)

    def __init__(self, transformer, text_encoder, tokenizer, lora_rank: int = 16, lora_alpha: float | None = None,
                 lora_ff: bool = False, max_tokens: int = 16, prediction: str = "v"):
        super().__init__()
        if prediction not in ("v", "x0"):
            raise ValueError(f"prediction must be 'v' or 'x0', got {prediction!r}")
        self.prediction = prediction
        if lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {lora_rank}")
        self.transformer, self.text_encoder, self.tokenizer = transformer, text_encoder, tokenizer
        self.text_encoder.requires_grad_(False).eval()
        self.max_tokens = max_tokens
        self.resolution = int(transformer.config.sample_size)
        self.lora_rank, self.lora_ff = lora_rank, lora_ff
        self.lora_alpha = float(lora_alpha if lora_alpha is not None else 2 * lora_rank)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._use_reference = False
        if lora_rank > 0:
            from peft import LoraConfig

            from genrl.lean_lora import make_lean

            transformer.requires_grad_(False)
            targets = list(ATTN_TARGETS) + (list(FF_TARGETS) if lora_ff else [])
            transformer.add_adapter(LoraConfig(r=lora_rank, lora_alpha=self.lora_alpha, target_modules=targets,
                                               init_lora_weights=True))
            make_lean(transformer)
            self.reference = None
        else:
            transformer.requires_grad_(True)
            self.reference = copy.deepcopy(transformer).requires_grad_(False).eval()

    @classmethod
    def from_pretrained(cls, path: str, lora_rank: int = 16, lora_alpha: float | None = None,
                        lora_ff: bool = False, device: str | torch.device = "cpu", local_files_only: bool = True,
                        **unknown) -> ShapesPolicy:
        """Load a ShapesPipeline directory (model_index.json + transformer/ text_encoder/ tokenizer/)."""
        if unknown:
            raise ValueError(f"ShapesPolicy.from_pretrained: unknown option(s) {sorted(unknown)}; valid: "
                             "lora_rank, lora_alpha, lora_ff, device, local_files_only")
        from diffusers import SD3Transformer2DModel
        from transformers import CLIPTextModelWithProjection, PreTrainedTokenizerFast

        index = os.path.join(path, "model_index.json")
        if not os.path.isfile(index):
            raise FileNotFoundError(f"{path} is not a shapes pipeline directory (no model_index.json); "
                                    "train one with `genrl pretrain shapes --out DIR` or use assets/shapes-base")
        with open(index) as f:
            meta = json.load(f)
        if meta.get("_class_name") != "ShapesPipeline":
            raise ValueError(f"{path}/model_index.json is not a ShapesPipeline; use load_policy for other models")
        transformer = SD3Transformer2DModel.from_pretrained(os.path.join(path, "transformer"))
        text_encoder = CLIPTextModelWithProjection.from_pretrained(os.path.join(path, "text_encoder"))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(os.path.join(path, "tokenizer"))
        policy = cls(transformer, text_encoder, tokenizer, lora_rank=lora_rank, lora_alpha=lora_alpha,
                     lora_ff=lora_ff, max_tokens=text_encoder.config.max_position_embeddings,
                     prediction=meta.get("prediction", "v"))
        policy.model_path = path
        return policy.to(device)

    # ---- conditioning -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Cond:
        """{"encoder_hidden_states": [B, T, D], "pooled_projections": [B, D]}; cached per unique prompt."""
        if isinstance(prompts, str):
            raise ValueError("encode expects a list of prompts, not a single string")
        dev = self.device
        if self._cache and next(iter(self._cache.values()))[0].device != dev:
            self._cache.clear()  # the policy moved to another device
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            tok = self.tokenizer(new, padding="max_length", max_length=self.max_tokens, truncation=True,
                                 return_tensors="pt")
            out = self.text_encoder(input_ids=tok.input_ids.to(dev), attention_mask=tok.attention_mask.to(dev))
            for i, p in enumerate(new):
                self._cache[p] = (out.last_hidden_state[i], out.text_embeds[i])
        hs, pooled = zip(*(self._cache[p] for p in prompts))
        return {"encoder_hidden_states": torch.stack(hs), "pooled_projections": torch.stack(pooled)}

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # ---- flow -----------------------------------------------------------------------------------------------
    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """v = eps - x0 predicted at x_t with t = sigma (0-d or [B]); timestep 1000 * sigma as SD3."""
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        t = (sigma.reshape(-1) * 1000).expand(b) if sigma.numel() == 1 else sigma.reshape(b) * 1000
        hs, pooled = cond["encoder_hidden_states"], cond["pooled_projections"]
        if hs.shape[0] == 1 and b > 1:
            hs, pooled = hs.expand(b, -1, -1), pooled.expand(b, -1)
        model = self.reference if (self._use_reference and self.reference is not None) else self.transformer
        with condition_scope(self.transformer, cond, b):  # cond["condition"]: CTRL labels (genrl/policies/condition)
            out = model(hidden_states=x, encoder_hidden_states=hs.to(x.dtype), pooled_projections=pooled.to(x.dtype),
                        timestep=t).sample
        if self.prediction == "x0":
            out = (x - out) / (t / 1000).clamp(min=1e-6).view(-1, *([1] * (x.dim() - 1)))
        return out

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1)

    def noise_shape(self, batch: int, resolution: int | None = None) -> tuple[int, ...]:
        r = self.resolution if resolution is None else int(resolution)
        return (batch, 3, r, r)

    # ---- trainable parameters / reference -----------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.transformer.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disable_adapter(self):
        """Inside: velocity() is the frozen base model (LoRA disabled, or the reference copy for full FT; no
        condition embedding)."""
        if self.reference is not None:
            prev, self._use_reference = self._use_reference, True
            try:
                yield self
            finally:
                self._use_reference = prev
        else:
            with adapters_disabled(self.transformer), condition_disabled(self.transformer):
                yield self

    def save_trainable(self, directory: str) -> None:
        """LoRA: peft state dict in lora.safetensors; full FT: transformer.safetensors. Plus trainable.json."""
        os.makedirs(directory, exist_ok=True)
        meta = {"family": "shapes", "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha,
                "lora_ff": self.lora_ff}
        if self.lora_rank > 0:
            from peft.utils import get_peft_model_state_dict

            sd = get_peft_model_state_dict(self.transformer)
            save_condition(self.transformer, directory)  # CTRL's label embedding, when there is one
            save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, os.path.join(directory, LORA_FILE))
        else:
            sd = {k: v for k, v in self.transformer.state_dict().items() if not k.startswith("genrl_condition.")}
            save_condition(self.transformer, directory)
            save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, os.path.join(directory, FULL_FILE))
        with open(os.path.join(directory, META_FILE), "w") as f:
            json.dump(meta, f, indent=2)

    def load_trainable(self, directory: str) -> None:
        lora, full = os.path.join(directory, LORA_FILE), os.path.join(directory, FULL_FILE)
        load_condition(self.transformer, directory)  # attaches CTRL's label embedding when the directory has one
        if self.lora_rank > 0:
            if not os.path.isfile(lora):
                raise FileNotFoundError(f"{directory} has no {LORA_FILE}; was it saved with lora_rank=0? "
                                        "load it with lora_rank=0")
            from peft.utils import set_peft_model_state_dict

            sd = load_file(lora, device=str(self.device))
            res = set_peft_model_state_dict(self.transformer, sd)
            unexpected = getattr(res, "unexpected_keys", None)
            if unexpected:
                raise ValueError(f"{lora} does not match this model's LoRA layout (unexpected keys e.g. "
                                 f"{unexpected[:2]}); load it with the lora_rank/lora_ff it was trained with")
        else:
            if not os.path.isfile(full):
                raise FileNotFoundError(f"{directory} has no {FULL_FILE}; it holds a LoRA: load with lora_rank>0")
            res = self.transformer.load_state_dict(load_file(full, device=str(self.device)), strict=False)
            missing = [k for k in res.missing_keys if not k.startswith("genrl_condition.")]
            if missing or res.unexpected_keys:
                raise ValueError(f"{full} does not match this model: missing {missing[:2]}, unexpected "
                                 f"{res.unexpected_keys[:2]}")

    def metadata_for(self, prompts: list[str]):
        """[{"spec": ...}] parsed from prompts in the world's grammar; None if any prompt is outside it."""
        from rewards.shapes.world import parse_prompt

        try:
            return [{"spec": parse_prompt(p)} for p in prompts]
        except ValueError:
            return None
