"""Memory sharding for multi-process runs, chosen by the accelerate launch config (configs/accelerate/*.yaml).

genrl's loop keeps the TRAINABLE tensors (LoRA) as ordinary replicated tensors on every process and averages
their gradients itself (one flat all-reduce), so rollouts, EMA, checkpoints and exports never see sharded tensors.
What is big is the FROZEN base transformer (FLUX.1-dev: 11.9 B parameters, 23.8 GB in bf16). With an FSDP preset
(`distributed_type: FSDP`, `fsdp_version: 2`) `shard_policy` applies PyTorch FSDP2 `fully_shard` to every
transformer block and to the transformer itself with the LoRA parameters as `ignored_params`: each process stores
1/N of the frozen base weights and all-gathers one block at a time in forward (and again in backward, for the
input gradients), freeing it after use (`fsdp_reshard_after_forward`).

Per-process memory (N processes, P base parameters of b bytes): P*b/N + one unsharded block + LoRA (+ Adam)
+ activations; see benchmarks/memory.md for measured and estimated numbers.

DeepSpeed presets: ZeRO-1/2 shard optimizer states / gradients, which for LoRA are a few hundred MB at most; the
loop does not hand its model to a DeepSpeed engine, so a DeepSpeed launch runs as plain data parallel (a warning
says so). Use the FSDP2 preset to cut memory.
"""

from __future__ import annotations

import os
import warnings

from torch import nn


def shard_policy(policy: nn.Module, accelerator) -> bool:
    """Shard the frozen base of `policy` with FSDP2 when `accelerator` was launched with an FSDP config and more
    than one process; returns True when it sharded. The policy must define `shard_units()` (the transformer
    blocks) and train LoRA (full fine-tuning with sharding is not supported: its trainable tensors would be
    sharded, which the loop's replicated-gradient all-reduce does not handle)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        if accelerator.is_main_process:
            warnings.warn("genrl: DeepSpeed launch config: the loop runs data parallel (LoRA gradients all-reduced, "
                          "full replicas); use configs/accelerate/fsdp2.yaml to shard the frozen base model",
                          stacklevel=2)
        return False
    # accelerate ignores an FSDP config on CPU-only machines (MULTI_CPU); the launch still sets ACCELERATE_USE_FSDP
    fsdp_env = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
    if not (kind == DistributedType.FSDP or fsdp_env) or accelerator.num_processes < 2:
        return False
    if not hasattr(policy, "shard_units"):
        raise ValueError(f"{type(policy).__name__} cannot be sharded (no shard_units()); launch with "
                         "configs/accelerate/multi_gpu.yaml instead of an FSDP config")
    trainable = {p for p in policy.trainable_parameters()}
    if len(trainable) == len(list(policy.parameters())):
        raise ValueError("FSDP sharding in genrl shards the frozen base under LoRA; full fine-tuning "
                         "(model.lora_rank=0) is not supported with it: set model.lora_rank > 0 or use multi_gpu.yaml")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is not None:
        reshard = bool(getattr(plugin, "reshard_after_forward", True))
    else:
        reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in ("1", "true", "yes")
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for unit in policy.shard_units():
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard,
                    ignored_params={p for p in unit.parameters() if p in trainable})
    root = policy.transformer
    fully_shard(root, mesh=mesh, reshard_after_forward=reshard,
                ignored_params={p for p in root.parameters() if p in trainable})
    if accelerator.is_main_process:
        print(f"genrl: FSDP2: frozen base of {type(root).__name__} sharded over {accelerator.num_processes} "
              f"processes ({len(policy.shard_units())} blocks); LoRA replicated")
    return True
