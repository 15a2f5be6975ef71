"""`torchrun --nproc_per_node 2` (gloo, CPU) gives the same advantages and the same updated weights as one process
with the same global batch: 2 Flow-GRPO steps with CFG on a tiny SD3 pipeline (tests/distributed_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_sd3_train_export import sd3_run_config, write_prompts
from tiny_pipelines import build_sd3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "distributed_worker.py")


def _run(cmd, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        out, _ = proc.communicate()
        pytest.fail("distributed run timed out:\n" + out[-3000:])
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_match_one(tmp_path):
    model = build_sd3(str(tmp_path / "model"))
    prompts = write_prompts(tmp_path / "p.txt")
    outs = {}
    for n in (1, 2):
        cfg = sd3_run_config(model, str(tmp_path / f"run{n}"), prompts)
        (tmp_path / f"cfg{n}.yaml").write_text(yaml.safe_dump(cfg))
        outs[n] = str(tmp_path / f"out{n}.safetensors")
    _run([sys.executable, WORKER, str(tmp_path / "cfg1.yaml"), outs[1]], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run(torchrun + [WORKER, str(tmp_path / "cfg2.yaml"), outs[2]], tmp_path)

    one, two = load_file(outs[1]), load_file(outs[2])
    assert one.keys() == two.keys()
    for step in (0, 1):  # rewards and group-relative advantages of the whole global batch
        torch.testing.assert_close(two[f"reward_step{step}"], one[f"reward_step{step}"], atol=1e-7, rtol=0)
        torch.testing.assert_close(two[f"adv_step{step}"], one[f"adv_step{step}"], atol=1e-5, rtol=0)
        assert one[f"adv_step{step}"].abs().sum() > 0
    lora = [k for k in one if "lora_" in k]
    assert lora and max(one[k].abs().max() for k in lora if "lora_B" in k) > 1e-2  # the weights did move (lr 3e-2)
    for k in lora:  # same updated weights (up to float summation order in the gradient all-reduce)
        torch.testing.assert_close(two[k], one[k], atol=1e-4, rtol=0)
    # only the main process wrote the run's files
    lines = (tmp_path / "run2" / "metrics.jsonl").read_text().splitlines()
    assert len([x for x in lines if "train/reward_mean" in x]) == 2
