"""`torchrun --nproc_per_node 2` splits the environment episodes over processes: the first step's episodes (gathered
in global order) are exactly the ones one process runs, and both runs train to finite, changed weights."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from robot_helpers import tiny_robot_raw
from safetensors.torch import load_file
from test_distributed_equivalence import TORCHRUN, WORKER, _run


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_split_the_episodes(tmp_path):
    import os

    pol = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "robot2d-bc")
    outs = {}
    for n, launcher in ((1, [sys.executable]), (2, TORCHRUN)):
        raw = tiny_robot_raw(pol, str(tmp_path / f"run{n}"), "flow_sde", "ppo",
                             sample={"group_size": 2, "groups_per_step": 4, "batch_size": 4},
                             train={"steps": 2, "batch_size": 4, "inner_epochs": 1, "updates_per_step": 1},
                             eval={"every": 0})
        raw["algorithm"]["env_options"] = {"max_steps": 40}
        (tmp_path / f"cfg{n}.yaml").write_text(yaml.safe_dump(raw))
        _run([*launcher, WORKER, str(tmp_path / f"cfg{n}.yaml"), str(tmp_path / f"out{n}.safetensors")], tmp_path)
        outs[n] = load_file(str(tmp_path / f"out{n}.safetensors"))
    r = outs[1]["reward_step0"]
    assert torch.equal(r, outs[2]["reward_step0"]) and 0 < r.mean() < 1  # the BC policy succeeds sometimes
    base = load_file(os.path.join(pol, "model.safetensors"))
    for k in outs[1]:
        if k.startswith("expert."):
            assert torch.isfinite(outs[2][k]).all()
            assert not torch.equal(outs[2][k], base[k]) and not torch.equal(outs[1][k], base[k])
