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

DeepSpeed presets (`distributed_type: DEEPSPEED`, ZeRO stage 1 or 2): `init_deepspeed` hands the policy and the
loop's AdamW to `deepspeed.initialize`. ZeRO-1 partitions the optimizer states (fp32 master copy and Adam moments),
ZeRO-2 also the gradients, over the N processes; DeepSpeed reduces the gradients, clips them to
`train.max_grad_norm` and steps; every process then holds the full updated trainable weights again, so rollouts,
EMA and exports are unchanged. The loop owns gradient accumulation (`managed_gradient_accumulation: false`:
`engine.step()` is the boundary). Compute precision stays with accelerate's autocast (bf16 or none; fp16 with
DeepSpeed is refused); the trainable weights and DeepSpeed's math are fp32. ZeRO-3 (which would shard the
trainable weights themselves) is refused: use the FSDP2 preset, which is also what cuts the memory of the frozen
base. Checkpoints hold every process's optimizer partition (`ZeroOptimizerState`); resume with the same process
count.
"""

from __future__ import annotations

import os

from torch import nn


def shard_policy(policy: nn.Module, accelerator) -> bool:
    """Shard the frozen base of `policy` with FSDP2 when `accelerator` was launched with an FSDP config and more
    than one process; returns True when it sharded. The policy must define `shard_units()` (the transformer
    blocks) and train LoRA (full fine-tuning with sharding is not supported: its trainable tensors would be
    sharded, which the loop's replicated-gradient all-reduce does not handle)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if deepspeed_stage(accelerator) is not None:
        return False  # DeepSpeed shards optimizer state / gradients (init_deepspeed), not the frozen base
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


_TRUE = ("1", "true", "yes")


def deepspeed_stage(accelerator) -> int | None:
    """ZeRO stage of a DeepSpeed launch, else None. `accelerate launch` with a DeepSpeed config exports
    ACCELERATE_USE_DEEPSPEED and ACCELERATE_DEEPSPEED_ZERO_STAGE (read directly: on CPU-only machines accelerate
    reports MULTI_CPU for such a launch, as it does for FSDP)."""
    from accelerate.utils import DistributedType

    env = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in _TRUE
    if accelerator.distributed_type != DistributedType.DEEPSPEED and not env:
        return None
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) is not None:
        return int(plugin.zero_stage)
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))


def init_deepspeed(policy: nn.Module, optimizer, accelerator, max_grad_norm: float | None):
    """A DeepSpeed engine over `policy` and `optimizer` for a DeepSpeed launch (ZeRO-1/2), else None."""
    stage = deepspeed_stage(accelerator)
    if stage is None:
        return None
    if stage not in (1, 2):
        raise ValueError(f"DeepSpeed ZeRO stage {stage} is not supported (it shards the trainable weights, which "
                         "rollouts and EMA need whole); use zero_stage 1 or 2, or configs/accelerate/fsdp2.yaml")
    if accelerator.mixed_precision == "fp16":
        raise ValueError("run.mixed_precision=fp16 is not supported with DeepSpeed (genrl's fp16 loss scaling "
                         "runs outside the engine); use run.mixed_precision=bf16 or no")
    try:
        import deepspeed
    except ImportError as e:
        raise ImportError("a DeepSpeed launch config needs deepspeed: pip install 'genrl[gpu]' (or deepspeed); "
                          "or launch with configs/accelerate/multi_gpu.yaml") from e
    zero: dict = {"stage": stage, "contiguous_gradients": True, "overlap_comm": False, "reduce_scatter": True}
    offload = os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none").lower()
    if offload not in ("", "none"):
        zero["offload_optimizer"] = {"device": offload}
    config = {
        "train_micro_batch_size_per_gpu": 1,  # bookkeeping only: the loop forms its own micro-batches
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,  # engine.step() is the accumulation boundary
        "gradient_clipping": float(max_grad_norm or 0.0),
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "steps_per_print": 2**31 - 1,
    }
    engine, *_ = deepspeed.initialize(model=policy, optimizer=optimizer, config=config, dist_init_required=False)
    if accelerator.is_main_process:
        print(f"genrl: DeepSpeed ZeRO-{stage}: optimizer states{' and gradients' if stage == 2 else ''} "
              f"partitioned over {accelerator.num_processes} processes")
    return engine


class ZeroOptimizerState:
    """Checkpoint view of a ZeRO optimizer: `state_dict()` (collective: call on every rank) gathers every rank's
    partition of the inner torch optimizer's state; `load_state_dict` restores this rank's partition and re-copies
    the fp32 master partition from the (already restored) trainable weights. Plain tensors and numbers only."""

    def __init__(self, engine):
        self.zero = engine.optimizer

    def state_dict(self) -> dict:
        import torch.distributed as dist

        mine = self.zero.optimizer.state_dict()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return {"zero_rank_states": [mine]}
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, mine)
        return {"zero_rank_states": out}

    def load_state_dict(self, state: dict) -> None:
        import torch.distributed as dist

        states = state.get("zero_rank_states")
        if states is None:
            raise ValueError("this checkpoint was not written by a DeepSpeed run; resume it without the DeepSpeed "
                             "launch config (or start a new run)")
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if len(states) != world:
            raise ValueError(f"this DeepSpeed checkpoint has {len(states)} optimizer partitions; resume it with "
                             f"{len(states)} processes (this launch has {world})")
        self.zero.refresh_fp32_params()
        self.zero.optimizer.load_state_dict(states[dist.get_rank() if world > 1 else 0])
