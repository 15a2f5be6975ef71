"""`torchrun --nproc_per_node 2` (gloo, CPU) gives the same advantages and the same updated weights as one process
with the same global batch: 2 Flow-GRPO steps with CFG on a tiny SD3 pipeline (tests/distributed_worker.py), as
plain data parallel, with the frozen base sharded by FSDP2, and with DeepSpeed ZeRO-2 (where a run stopped after
step 1 and resumed from its checkpoint also ends on the same weights)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_sd3_train_export import sd3_run_config as _sd3_run_config
from test_sd3_train_export import write_prompts
from tiny_pipelines import build_sd3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "distributed_worker.py")


def _run(cmd, tmp_path, **env_extra):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
           **env_extra}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        import psutil

        workers = psutil.Process(proc.pid).children(recursive=True)  # torchrun starts them in their own sessions
        os.killpg(proc.pid, signal.SIGKILL)
        for w in workers:
            w.kill()
        out, _ = proc.communicate()
        pytest.fail("distributed run timed out:\n" + out[-3000:])
    assert proc.returncode == 0, out[-3000:]


def sd3_run_config(*args, **over) -> dict:
    """The SD3 test run at one torch thread per process: the thread count can change CPU rounding (genrl/threads.py),
    and the reward (JPEG size) turns a one-ulp pixel difference into a different reward."""
    return _sd3_run_config(*args, **{**over, "run": {"threads": 1, **over.get("run", {})}})


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    model = build_sd3(str(tmp / "model"))
    prompts = write_prompts(tmp / "p.txt")
    cfg = sd3_run_config(model, str(tmp / "run1"), prompts)
    (tmp / "cfg1.yaml").write_text(yaml.safe_dump(cfg))
    _run([sys.executable, WORKER, str(tmp / "cfg1.yaml"), str(tmp / "out1.safetensors")], tmp)
    return model, prompts, load_file(str(tmp / "out1.safetensors"))


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# what `accelerate launch --config_file configs/accelerate/<preset>.yaml` exports for each preset
LAUNCH_ENV = {"ddp": {}, "fsdp2": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"},
              "deepspeed": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}}


# "ddp": replicas, LoRA gradients all-reduced by the loop (multi_gpu.yaml); "fsdp2": the frozen base sharded with
# FSDP2 (fsdp2.yaml); "deepspeed": ZeRO-2 partitions LoRA gradients and Adam states (deepspeed_zero2.yaml).
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["ddp", "fsdp2", "deepspeed"])
def test_two_processes_match_one(one_process, tmp_path, mode):
    if mode == "deepspeed":
        pytest.importorskip("deepspeed")
    model, prompts, one = one_process
    cfg = sd3_run_config(model, str(tmp_path / "run2"), prompts)
    (tmp_path / "cfg2.yaml").write_text(yaml.safe_dump(cfg))
    out = str(tmp_path / "out2.safetensors")
    _run(TORCHRUN + [WORKER, str(tmp_path / "cfg2.yaml"), out], tmp_path, **LAUNCH_ENV[mode])

    two = load_file(out)
    assert one.keys() == two.keys()
    assert int(two["sharded"]) == (mode == "fsdp2") and int(one["sharded"]) == 0
    assert int(two["deepspeed"]) == (mode == "deepspeed") and int(one["deepspeed"]) == 0
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


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_resume_matches_straight_run(one_process, tmp_path):
    """ZeRO-2: 1 step + checkpoint (every rank's optimizer partition) + resume + 1 step == 2 steps in one process."""
    pytest.importorskip("deepspeed")
    model, prompts, one = one_process
    cfg = sd3_run_config(model, str(tmp_path / "run"), prompts, train={"steps": 1}, checkpoint={"every": 1})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = LAUNCH_ENV["deepspeed"]
    _run(TORCHRUN + [WORKER, str(tmp_path / "cfg.yaml"), str(tmp_path / "a.safetensors")], tmp_path, **env)
    out = str(tmp_path / "b.safetensors")
    _run(TORCHRUN + [WORKER, str(tmp_path / "run" / "config.yaml"), out, "--resume"], tmp_path, **env)
    two = load_file(out)
    for k in (k for k in one if "lora_" in k):
        torch.testing.assert_close(two[k], one[k], atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_skips_a_step_with_a_nonfinite_loss_on_one_rank(one_process, tmp_path):
    """ZeRO-2: a NaN loss on rank 1 only in step 0 skips that update on both ranks (no NaN reaches the weights or
    Adam's partitions); step 1 then trains normally."""
    pytest.importorskip("deepspeed")
    import json

    model, prompts, one = one_process
    cfg = sd3_run_config(model, str(tmp_path / "run"), prompts)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = str(tmp_path / "w.safetensors")
    _run(TORCHRUN + [WORKER, str(tmp_path / "cfg.yaml"), out, "--nan-step0"], tmp_path, **LAUNCH_ENV["deepspeed"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = {r["step"]: r["train/skipped_updates"] for r in rows if "train/skipped_updates" in r}
    assert skipped == {1: 1, 2: 1}  # cumulative: step 0 (logged as 1) skipped, step 1 trained
    w = load_file(out)
    lora = [k for k in one if "lora_" in k]
    assert all(torch.isfinite(w[k]).all() for k in lora)
    assert any(not torch.equal(w[k], one[k]) for k in lora)  # one update, not two: differs from the clean run
    assert any(w[k].abs().max() > 0 for k in lora if "lora_B" in k)  # ... but step 1 did train
