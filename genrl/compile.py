"""Opt-in `torch.compile` of a policy's denoiser (`run.compile: true`), with an eager fallback.

What is compiled: the modules `policy.compile_targets()` names (the diffusion transformer of the image, video and
3D adapters), in place (`nn.Module.compile`), so every caller (rollouts, the update's forward and backward, the
reference and EMA forwards, evaluation) uses them unchanged. The same weights give the same function: compiled
kernels fuse element-wise ops and round differently in the last bits (about 1e-4 on the shapes model), so a
compiled run is deterministic and resumes exactly, but it does not reproduce an eager run bit for bit.

When it pays: compiling costs tens of seconds per graph on a 2-core CPU (one graph per grad mode, adapter state
and batch shape; benchmarks/compile.md), so it is for runs longer than a few minutes. Where inductor cannot run (no
C++ compiler on a CPU machine) the run stays eager and says so; a graph that fails to compile runs eagerly
(dynamo's `suppress_errors`).
"""

from __future__ import annotations

import os
import shutil

import torch


def cpu_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU ($CXX, else g++ / c++ / clang++), or None."""
    for name in filter(None, (os.environ.get("CXX"), "g++", "c++", "clang++")):
        if shutil.which(name):
            return name
    return None


def compile_policy(policy, device: torch.device, log_fn=print) -> list[str]:
    """Compile `policy.compile_targets()` in place; returns the names compiled ([] when it fell back to eager)."""
    targets = policy.compile_targets()
    if not targets:
        raise ValueError(f"run.compile: {type(policy).__name__} names no module to compile; set run.compile=false")
    if device.type == "cpu" and cpu_compiler() is None:
        log_fn("genrl: run.compile: no C++ compiler (g++, c++ or clang++) found for inductor; running eager")
        return []
    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly instead of raising
    for module in targets.values():
        module.compile()
    return sorted(targets)
