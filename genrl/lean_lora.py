"""A leaner forward for peft's LoRA `Linear` layers: bit-identical outputs and gradients, less Python per call.

peft's `lora.Linear.forward` serves every feature (mixed-adapter batches, variants such as DoRA, merging, several
active adapters) and pays for them on every call: argument checks, a dict of variant kwargs, three property
reads, and three submodule calls (dropout, lora_A, lora_B), each through `nn.Module.__call__`. For the plain case
genrl trains (one active adapter, no dropout, no variant, not merged) `LeanLoraLinear.forward` computes

    y = base_layer(x) + linear(linear(cast(x), A), B) * scaling          (then cast back to base_layer's dtype)

with exactly peft's tensor operations in peft's order, so results are bitwise equal; every other case (and any
hook on lora_A / lora_B, e.g. DeepSpeed ZeRO-3's parameter gathering) falls through to peft's own forward. The
base layer is still called as a module, so hooks on it (FSDP, offloading) run as before. On the tiny SD3 step
(~840 LoRA calls per step) this saves a fixed host cost per call; see benchmarks/sd3_step.md.

`make_lean(model)` swaps the class of every plain peft `lora.Linear` in `model` (state dict, parameters, peft's
own API and deepcopy are unchanged); `make_lean(model, False)` swaps it back. `GENRL_LEAN_LORA=0` turns it off.
"""

from __future__ import annotations

import os

import torch.nn as nn
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as PeftLinear
from torch.nn.modules import module as _module


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


class LeanLoraLinear(PeftLinear):
    """peft's LoRA Linear with a short path for the plain single-adapter case (module docstring)."""

    def forward(self, x, *args, **kwargs):
        name = self._active_adapter
        if isinstance(name, list):
            name = name[0] if len(name) == 1 else None
        if (args or kwargs or name not in self.lora_A or name in self.lora_variant or self.merged_adapters
                or type(self.lora_dropout[name]) is not nn.Identity):
            return super().forward(x, *args, **kwargs)
        if self._disable_adapters:
            return self.base_layer(x)
        lora_a, lora_b = self.lora_A[name], self.lora_B[name]
        if (_hooked(lora_a) or _hooked(lora_b) or _module._global_forward_hooks
                or _module._global_forward_pre_hooks):
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        dtype = result.dtype
        w = lora_a.weight
        if getattr(self, "cast_input_dtype_enabled", True) and x.dtype != w.dtype:
            x = x.to(dtype=w.dtype)
        result = result + F.linear(F.linear(x, w, lora_a.bias), lora_b.weight, lora_b.bias) * self.scaling[name]
        return result.to(dtype)


# the peft internals the short path reads; a peft without them keeps its own forward
_USES = ("_active_adapter", "_disable_adapters", "merged_adapters", "lora_variant", "lora_dropout", "scaling")


def make_lean(model: nn.Module, enabled: bool = True) -> int:
    """Swap every plain peft `lora.Linear` of `model` to `LeanLoraLinear` (enabled) or back; returns how many.
    A no-op when GENRL_LEAN_LORA=0 (enabling only)."""
    if enabled and os.environ.get("GENRL_LEAN_LORA", "1") == "0":
        return 0
    src, dst = (PeftLinear, LeanLoraLinear) if enabled else (LeanLoraLinear, PeftLinear)
    n = 0
    for m in model.modules():
        if type(m) is src and all(hasattr(m, a) for a in _USES):
            m.__class__ = dst
            n += 1
    return n
