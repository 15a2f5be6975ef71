"""`genrl export` of a shapes-world run: the LoRA as saved, and a merged ShapesPipeline equal to base + LoRA."""

import json

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model

from genrl.cli import main as cli
from genrl.loop import train
from genrl.policies import load_policy
from genrl.rlg import load_rlg_policy


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = tiny_shapes_model(str(root / "shapes"))
    run_dir = root / "run"
    train(tiny_config(model, str(run_dir), eval={"every": 0}, train={"lr": 5e-2}), progress=False)
    return model, str(run_dir)


def _velocity(policy):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    cond = policy.encode(["a photo of a red circle", "two blue squares"])
    with torch.no_grad():
        return policy.velocity(x, torch.tensor([0.7, 0.3]), cond).float()


def test_merged_export_equals_base_plus_lora(run, tmp_path):
    model, run_dir = run
    out = tmp_path / "merged"
    assert cli(["export", "--run", run_dir, "--merge", "--out", str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "ShapesPipeline"
    assert index.get("prediction") == json.loads(open(f"{model}/model_index.json").read()).get("prediction")
    tuned = load_rlg_policy(model, run_dir)
    merged = load_policy(str(out), lora_rank=0)
    base = load_policy(model, lora_rank=0)
    v_tuned, v_merged, v_base = _velocity(tuned), _velocity(merged), _velocity(base)
    assert (v_tuned - v_base).abs().max() > 1e-4  # the LoRA changed the model ...
    torch.testing.assert_close(v_merged, v_tuned, atol=1e-5, rtol=1e-4)  # ... and the merge keeps that change


def test_lora_export_loads_for_sampling(run, tmp_path):
    model, run_dir = run
    out = tmp_path / "lora"
    assert cli(["export", "--run", run_dir, "--raw", "--out", str(out)]) == 0
    assert (out / "lora.safetensors").is_file() and not (out / ".raw-tmp").exists()
    raw = load_rlg_policy(model, str(out))
    ema = load_rlg_policy(model, run_dir)
    assert not torch.equal(_velocity(raw), _velocity(ema))  # --raw: the raw weights, not the EMA ones
