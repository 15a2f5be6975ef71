"""Helpers shared by the diffusers-pipeline adapters (sd3.py, flux.py): loading, dtypes, prompt-embedding cache,
trainable setup (LoRA or full fine-tuning), saving/loading what was trained. Not an adapter itself.

Time convention (for the adapters using this): t = sigma in [0, 1], t = 1 noise, x_t = (1 - t) x0 + t eps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections import OrderedDict

import torch
from torch import nn

from genrl import lora as lora_lib
from genrl.policies import read_model_index
from genrl.policies.condition import condition_disabled, load_condition, save_condition

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
TRAINABLE_INFO = "genrl_trainable.json"  # small sidecar next to the weights: what kind of weights these are


def parse_dtype(value, name: str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value not in DTYPES:
        raise ValueError(f"option {name}={value!r} is not a dtype; use one of {', '.join(DTYPES)}")
    return DTYPES[value]


def module_dtype(model: nn.Module) -> torch.dtype:
    """The compute dtype diffusers' `model.dtype` reports (the first floating-point parameter outside
    `_keep_in_fp32_modules`), read without `model.dtype`'s walk over every module (about 3 ms per call on a small
    model, once per forward)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    for name, p in model.named_parameters():
        if p.is_floating_point() and not any(k in name for k in keep):
            return p.dtype
    return torch.float32


def pipeline_kwargs(path: str, expected_class: str, local_files_only: bool = False, **extra) -> dict:
    """from_pretrained kwargs: checks the pipeline class; components stored as [null, null] are passed as None
    (diffusers refuses to load such a directory otherwise)."""
    index = read_model_index(path, local_files_only)
    found = index.get("_class_name", "?")
    if found != expected_class:
        raise ValueError(f"{path} holds a {found!r}, but this adapter needs a {expected_class!r} "
                         f"(supported pipelines: {', '.join(lora_lib.SUPPORTED_PIPELINES)}, ShapesPipeline)")
    kwargs = {k: None for k, v in index.items() if isinstance(v, list) and (not v or v[0] is None)}
    kwargs.update(extra)
    if local_files_only:
        kwargs["local_files_only"] = True
    return kwargs


def default_device() -> torch.device:
    """This process's accelerator device (accelerate/torchrun set the current CUDA device per rank), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def place_pipeline(pipe, device: torch.device, offload_text_encoders: bool) -> None:
    """Move the pipeline's models to `device`, except the text encoders when they are offloaded (kept on CPU)."""
    for name, comp in pipe.components.items():
        if isinstance(comp, nn.Module) and not (offload_text_encoders and name.startswith("text_encoder")):
            comp.to(device)


def check_options(options: dict, allowed: set[str], adapter: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown {adapter} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")


class PromptCache:
    """LRU cache prompt -> tuple of CPU tensors (one row each), so text encoders run once per unique prompt."""

    def __init__(self, max_size: int = 4096):
        self.max_size = max_size
        self._d: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()

    def get_many(self, prompts: list[str], encode_fn) -> list[torch.Tensor]:
        """Rows for `prompts` stacked per field; `encode_fn(new_prompts)` returns a tuple of [N, ...] tensors."""
        new = list(dict.fromkeys(p for p in prompts if p not in self._d))
        if new:
            fields = encode_fn(new)
            for i, p in enumerate(new):
                self._d[p] = tuple(f[i].detach().cpu() for f in fields)
        rows = []
        for p in prompts:
            self._d.move_to_end(p)
            rows.append(self._d[p])
        out = [torch.stack([r[j] for r in rows]) for j in range(len(rows[0]))]
        while len(self._d) > self.max_size:
            self._d.popitem(last=False)
        return out


def setup_trainable(transformer: nn.Module, lora_rank: int, lora_alpha: float | None, targets: list[str],
                    lora_init: str | bool = "gaussian", gradient_checkpointing: bool = False) -> nn.Module | None:
    """LoRA (rank > 0; alpha None = 2 * rank as the reference) or full fine-tuning (rank == 0). Returns the frozen
    reference copy for full fine-tuning (the base model for KL / disable_adapter), else None."""
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 0:
        raise ValueError(f"LoRA rank must be an integer > 0 (or 0 for full fine-tuning), got {lora_rank!r}")
    reference = None
    if lora_rank == 0:
        reference = copy.deepcopy(transformer).requires_grad_(False).eval()
        transformer.requires_grad_(True)
    else:
        lora_lib.add_lora(transformer, lora_rank, lora_alpha if lora_alpha is not None else 2 * lora_rank,
                          targets, init=lora_init)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return reference


@contextlib.contextmanager
def adapter_disabled(transformer: nn.Module, reference: nn.Module | None, holder: dict):
    """Inside: the frozen base model. LoRA: peft adapters disabled. Full fine-tuning: the reference copy is used
    (holder["transformer"] is swapped for the duration)."""
    if reference is not None:
        holder["active"] = reference
        try:
            yield
        finally:
            holder["active"] = transformer
        return
    with lora_lib.adapters_disabled(transformer), condition_disabled(transformer):  # CTRL: no condition either
        yield


def save_trained(transformer: nn.Module, directory: str, pipeline_class: str, full: bool) -> None:
    """LoRA: `directory`/pytorch_lora_weights.safetensors (diffusers format, `pipe.load_lora_weights(directory)`).
    Full: `directory`/transformer/ (diffusers save_pretrained, safetensors). Plus a small genrl_trainable.json."""
    os.makedirs(directory, exist_ok=True)
    if full:
        transformer.save_pretrained(os.path.join(directory, "transformer"), safe_serialization=True)
        info = {"kind": "full", "pipeline": pipeline_class}
    else:
        lora_lib.save_lora(transformer, directory, pipeline_class)
        cfg = transformer.peft_config["default"]
        info = {"kind": "lora", "pipeline": pipeline_class, "rank": cfg.r, "alpha": cfg.lora_alpha,
                "targets": sorted(cfg.target_modules)}
    save_condition(transformer, directory)  # CTRL's label embedding (condition.safetensors), when there is one
    with open(os.path.join(directory, TRAINABLE_INFO), "w") as f:
        json.dump(info, f, indent=1)


def load_trained(transformer: nn.Module, directory: str, full: bool) -> None:
    load_condition(transformer, directory)  # attaches CTRL's label embedding when the directory has one
    if full:
        from safetensors.torch import load_file

        sub = os.path.join(directory, "transformer")
        files = sorted(f for f in os.listdir(sub) if f.endswith(".safetensors")) if os.path.isdir(sub) else []
        if not files:
            raise FileNotFoundError(f"{directory} has no transformer/*.safetensors (a full fine-tuning save)")
        state = {}
        for f in files:
            state.update(load_file(os.path.join(sub, f)))
        missing, unexpected = transformer.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{sub} does not match the model: missing {missing[:2]}, unexpected {unexpected[:2]}")
    else:
        lora_lib.load_lora(transformer, directory)


def move_frozen(modules: dict[str, nn.Module | None], fn, skip_text_encoders: bool = False) -> None:
    """Apply an nn.Module._apply function (device moves from .to()) to modules kept outside the module tree
    (text encoders stay where they are when they are offloaded)."""
    for name, m in modules.items():
        if m is not None and not (skip_text_encoders and name.startswith("text_encoder")):
            m._apply(fn)


@contextlib.contextmanager
def text_encoders_on(modules: dict[str, nn.Module | None], device: torch.device, offload: bool):
    """With offloading, the text encoders live on the CPU and visit `device` only to encode new prompts
    (the cache means that happens once per unique prompt). Yields the device to encode on."""
    encoders = [m for n, m in modules.items() if n.startswith("text_encoder") and m is not None]
    if not offload:
        yield encoders[0].device
        return
    for m in encoders:
        m.to(device)
    try:
        yield device
    finally:
        for m in encoders:
            m.to("cpu")
