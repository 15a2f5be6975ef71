"""LoRA for diffusers transformers via peft, saved in the diffusers LoRA format.

    add_lora(transformer, rank=32, alpha=64, targets=SD3_TARGETS)       # validated injection (adapter "default")
    save_lora(transformer, "out/", "StableDiffusion3Pipeline")          # -> out/pytorch_lora_weights.safetensors
    StableDiffusion3Pipeline.from_pretrained(base).load_lora_weights("out/")   # works unchanged
    load_lora(transformer, "out/")                                      # back into the injected adapter

The saved file is what diffusers' own LoRA training scripts write: `get_peft_model_state_dict(transformer)`
(peft key names, `lora_A` / `lora_B`) passed to `<Pipeline>.save_lora_weights(transformer_lora_layers=...)`, which
prefixes keys with "transformer." and stores the peft LoraConfig (rank, alpha, targets) as safetensors metadata so
`load_lora_weights` restores the same scale alpha/rank. (`convert_state_dict_to_diffusers` is only needed for
text-encoder LoRA, which genrl does not train.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import weakref

import torch
from torch import nn

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' default file name

# Reference target modules (flow_methods.md §0.2, §1.7): attention projections of the joint blocks ...
SD3_TARGETS = [
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
]
# ... and for FLUX.1 also the feed-forwards of the image and text streams.
FLUX_TARGETS = SD3_TARGETS + ["ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"]

# Wan: the attention projections (q, k, v, out) of every block's self- and cross-attention.
WAN_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]

SUPPORTED_PIPELINES = ("StableDiffusion3Pipeline", "FluxPipeline", "WanPipeline")


def linear_module_names(model: nn.Module) -> list[str]:
    """Target names a user can give: Linear module names with the block prefix ("transformer_blocks.3.") removed."""
    found = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and "lora_" not in name and "base_layer" not in name:
            m = re.match(r"^[^.]*?\.\d+\.(.+)$", name)  # strip up to the first numeric component (block index)
            found.add(m.group(1) if m else name)
    return sorted(found)


def validate_lora_args(model: nn.Module, rank: int, alpha: float, targets: list[str]) -> None:
    """Raise ValueError (one line) for a rank/alpha <= 0 or a target module that matches nothing in `model`."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA rank must be an integer > 0, got {rank!r} (reference: 32 for SD3, 64 for FLUX)")
    if not alpha or alpha <= 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r} (reference: 2 * rank)")
    if not targets:
        raise ValueError("LoRA target modules are empty; give e.g. ['attn.to_q', 'attn.to_k', 'attn.to_v']")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(
            f"LoRA target module(s) {', '.join(map(repr, missing))} not found in {type(model).__name__}; "
            f"linear modules found: {', '.join(linear_module_names(model))}"
        )


_TUNER_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tuner_layers(model: nn.Module) -> list[nn.Module]:
    layers = _TUNER_LAYERS.get(model)
    if layers is None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        if not layers:
            raise ValueError(f"{type(model).__name__} has no LoRA adapter to disable")
        _TUNER_LAYERS[model] = layers
    return layers


@contextlib.contextmanager
def adapters_disabled(model: nn.Module):
    """Inside: every peft LoRA layer of `model` returns its base layer's output (what diffusers'
    `disable_adapters()` / `enable_adapters()` do, without their per-call peft version check and walk over all
    modules, about 5 ms per pair on a small model; the layers are found once). The LoRA weights' requires_grad is
    left as it is."""
    layers = _tuner_layers(model)
    prev = [m._disable_adapters for m in layers]
    for m in layers:
        m._disable_adapters = True
    try:
        yield
    finally:
        for m, p in zip(layers, prev):
            m._disable_adapters = p


def add_lora(model: nn.Module, rank: int, alpha: float, targets: list[str], init: str | bool = "gaussian",
             adapter_name: str = "default"):
    """Inject a peft LoRA adapter into a diffusers model (PeftAdapterMixin.add_adapter); LoRA weights in fp32
    (the base may be bf16/fp16); only the LoRA weights require grad. Returns the peft LoraConfig."""
    from peft import LoraConfig

    validate_lora_args(model, rank, alpha, targets)
    if not hasattr(model, "add_adapter"):
        raise ValueError(f"{type(model).__name__} is not a diffusers model with peft support (no add_adapter)")
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=list(targets))
    model.add_adapter(config, adapter_name=adapter_name)
    _TUNER_LAYERS.pop(model, None)
    from genrl.lean_lora import make_lean

    make_lean(model)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
            p.requires_grad_(True)
    return config


def lora_state_dict(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's weights with peft key names (no adapter name), as diffusers' training scripts save them."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=adapter_name)


def _pipeline_class(pipeline_class: str):
    if pipeline_class not in SUPPORTED_PIPELINES:
        raise ValueError(f"LoRA export for pipeline class {pipeline_class!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_PIPELINES)}")
    import diffusers

    return getattr(diffusers, pipeline_class)


def save_lora(model: nn.Module, directory: str, pipeline_class: str, adapter_name: str = "default",
              is_main_process: bool = True) -> str:
    """Write `directory`/pytorch_lora_weights.safetensors in the diffusers LoRA format (fp32 weights, LoraConfig
    metadata). `<pipeline_class>.load_lora_weights(directory)` loads it. Returns the file path."""
    cls = _pipeline_class(pipeline_class)
    state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(model, adapter_name).items()}
    metadata = model.peft_config[adapter_name].to_dict()
    cls.save_lora_weights(directory, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata,
                          is_main_process=is_main_process, weight_name=LORA_WEIGHT_NAME)
    return os.path.join(directory, LORA_WEIGHT_NAME)


def read_lora_file(directory: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(transformer state dict with the "transformer." prefix removed, LoraConfig dict or None) from a saved dir."""
    from safetensors import safe_open

    path = os.path.join(directory, LORA_WEIGHT_NAME) if os.path.isdir(directory) else directory
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no LoRA weights at {path}; expected a directory written by genrl (save_trainable)")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    prefix = "transformer."
    if not any(k.startswith(prefix) for k in state):
        raise ValueError(f"{path} holds no transformer LoRA weights (keys start with {next(iter(state), '?')!r})")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    config = None
    raw = meta.get("lora_adapter_metadata")
    if raw:  # diffusers flattens {"transformer": LoraConfig dict} to {"transformer.r": ..., ...}
        config = {k[len(prefix):]: v for k, v in json.loads(raw).items() if k.startswith(prefix)} or None
    return state, config


def load_lora(model: nn.Module, directory: str, adapter_name: str = "default") -> None:
    """Load a diffusers-format LoRA file (from save_lora) into the already-injected adapter `adapter_name`."""
    from peft.utils import set_peft_model_state_dict

    state, config = read_lora_file(directory)
    have = model.peft_config[adapter_name]
    if config and (int(config.get("r", have.r)) != have.r or float(config.get("lora_alpha", have.lora_alpha))
                   != float(have.lora_alpha)):
        raise ValueError(f"{directory}: LoRA rank/alpha {config.get('r')}/{config.get('lora_alpha')} differ from the "
                         f"model's {have.r}/{have.lora_alpha}; set model.lora_rank / model.lora_alpha to match")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"{directory}: {len(unexpected)} LoRA weights do not fit this model, e.g. {unexpected[0]}")
    for n, p in model.named_parameters():  # keep fp32 LoRA weights even if the file was written in another dtype
        if n in dtypes and p.dtype != dtypes[n]:
            p.data = p.data.to(dtypes[n])


def merged_pipeline(base_path: str, lora_dir: str, pipeline_class: str, **load_kwargs):
    """Load the base pipeline, apply the LoRA with diffusers' own `load_lora_weights` + `fuse_lora`, unload the
    adapter layers: a plain pipeline whose transformer weights include W + (alpha/r) B A."""
    cls = _pipeline_class(pipeline_class)
    pipe = cls.from_pretrained(base_path, **load_kwargs)
    pipe.load_lora_weights(lora_dir, adapter_name="genrl")
    pipe.fuse_lora(components=["transformer"], lora_scale=1.0)
    pipe.unload_lora_weights()
    return pipe
