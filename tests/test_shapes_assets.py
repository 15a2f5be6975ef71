"""Smoke test of the shipped base model assets/shapes-base: layout, size, seeded sampling, the reward on it."""

import json
import os

import pytest
import torch

ASSET = os.path.join(os.path.dirname(__file__), "..", "assets", "shapes-base")
pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(ASSET, "model_index.json")),
                                reason="assets/shapes-base not built (genrl pretrain shapes --out assets/shapes-base)")


def test_shipped_layout_and_size():
    with open(os.path.join(ASSET, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "ShapesPipeline"
    total = 0
    for root, _, files in os.walk(ASSET):
        for name in files:
            assert not name.endswith((".bin", ".pt", ".pth", ".ckpt")), name  # safetensors only
            if name.endswith(".safetensors"):
                total += os.path.getsize(os.path.join(root, name))
    assert 0 < total <= 20 * 2**20
    assert os.path.isfile(os.path.join(ASSET, "README.md"))


def test_shipped_model_samples_and_is_seeded():
    import rewards
    from genrl.policies import load_policy
    from genrl.shapes.generate import generate

    policy = load_policy(ASSET, lora_rank=8)
    colors = ["red", "blue", "yellow", "green"] * 2
    prompts = [f"a photo of a {c} square" for c in colors]
    a = generate(policy, prompts, seed=0, steps=20, cfg_scale=1.0)
    b = generate(policy, prompts, seed=0, steps=20, cfg_scale=1.0)
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    out = rewards.load("shapes")(a, prompts)
    # the base model draws objects of the asked colour (shapes are still ragged: RL has room)
    hits = [any(o["color"] == c for o in objs) for c, objs in zip(colors, out.details["objects"])]
    assert sum(hits) >= 4, out.details["objects"]


def test_demo_command_runs_the_shipped_demo_config(tmp_path, capsys):
    """`genrl train` with no config runs configs/shapes/demo.yaml on the shipped model (1 step here, no eval)."""
    from genrl.cli import main as cli

    run = tmp_path / "demo"
    assert cli(["train", "--no-progress", f"run.dir={run}", "train.steps=1", "eval.every=0",
                "sample.groups_per_step=2", "sample.batch_size=16", "train.batch_size=16",
                "run.tensorboard=false"]) == 0
    assert "CPU demo (configs/shapes/demo.yaml): awm on" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1 and rows[-1]["samples_seen"] == 16
    assert (run / "checkpoints" / "latest").is_file()
