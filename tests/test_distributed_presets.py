"""The shipped accelerate launch presets parse with accelerate's own loader and say what they promise."""

from __future__ import annotations

import glob
import os

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    "multi_gpu": ("MULTI_GPU", 1), "multi_node": ("MULTI_GPU", 4), "fsdp2": ("FSDP", 1),
    "fsdp2_multi_node": ("FSDP", 2), "deepspeed_zero2": ("DEEPSPEED", 1),
    "deepspeed_zero2_multi_node": ("DEEPSPEED", 4),
}


def test_every_preset_is_listed():
    found = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(REPO, "configs", "accelerate", "*.yaml"))}
    assert found == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parses(name):
    c = load_config_from_file(os.path.join(REPO, "configs", "accelerate", f"{name}.yaml"))
    kind, machines = PRESETS[name]
    assert str(c.distributed_type).endswith(kind) and c.num_machines == machines
    assert c.num_processes % c.num_machines == 0
    if kind == "FSDP":
        assert c.fsdp_config["fsdp_version"] == 2 and c.fsdp_config["fsdp_reshard_after_forward"] is True
    if kind == "DEEPSPEED":
        assert c.deepspeed_config["zero_stage"] == 2


def test_shard_policy_is_a_no_op_without_fsdp():
    from accelerate import Accelerator
    from torch import nn

    from genrl.distributed import shard_policy

    assert shard_policy(nn.Linear(2, 2), Accelerator(cpu=True)) is False


@pytest.mark.parametrize("env, match", [
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO stage 3 is not supported"),
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2", "ACCELERATE_MIXED_PRECISION": "fp16"}, "fp16 is not supported"),
])
def test_deepspeed_launch_refuses_what_it_cannot_do(monkeypatch, env, match):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from genrl.distributed import init_deepspeed

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    AcceleratorState._reset_state(True)
    try:
        acc = Accelerator(cpu=True, mixed_precision=env.get("ACCELERATE_MIXED_PRECISION", "no"))
        with pytest.raises(ValueError, match=match):
            init_deepspeed(torch.nn.Linear(2, 2), None, acc, 1.0)
    finally:
        AcceleratorState._reset_state(True)
