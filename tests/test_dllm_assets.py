"""The shipped base dLLM (assets/puzzles-dllm) and `genrl pretrain dllm`."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSET = os.path.join(ROOT, "assets", "puzzles-dllm")


def test_asset_is_small_safetensors_with_a_card():
    files = os.listdir(ASSET)
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert sum(os.path.getsize(os.path.join(ASSET, f)) for f in files) <= 10 * 2**20
    card = open(os.path.join(ASSET, "README.md")).read()
    scores = json.load(open(os.path.join(ASSET, "eval_scores.json")))
    solved = scores["sudoku_eval"]["overall"]["solved"]
    assert 0.2 <= solved <= 0.6 and f"{solved:.3f}" in card


@pytest.mark.slow
def test_asset_scores_reproduce(tmp_path):
    from genrl.cli import main

    out = tmp_path / "s.json"
    assert main(["eval", "--model", ASSET, "--split", "eval", "--out", str(out), "--threads", "1"]) == 0
    want = json.load(open(os.path.join(ASSET, "eval_scores.json")))["sudoku_eval"]["overall"]
    assert json.loads(out.read_text())["overall"]["solved"] == pytest.approx(want["solved"], abs=1e-9)


def test_pretrain_is_deterministic_and_prefix_exact(tmp_path):
    """The constant-lr recipe: the model after N steps of a longer run equals a run of N steps."""
    import genrl.worlds.puzzles.pretrain as pre
    from genrl.worlds.puzzles.model import PuzzlesModelConfig

    small = PuzzlesModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64)
    orig = pre.evaluate_world
    pre.evaluate_world = lambda model, tok: orig(model, tok, n_sudoku=4, n_countdown=4, batch=4)
    try:
        cfg = pre.DLLMPretrainConfig(steps=3, batch_size=8, warmup=2, eval_every=2,
                                     snapshot_dir=str(tmp_path / "snaps"))
        info = pre.pretrain(str(tmp_path / "long"), cfg, small, log=lambda s: None)
        pre.pretrain(str(tmp_path / "short"), pre.DLLMPretrainConfig(steps=2, batch_size=8, warmup=2, eval_every=0),
                     small, log=lambda s: None)
    finally:
        pre.evaluate_world = orig
    assert info["steps"] == 3 and {"sudoku_solved", "countdown_solved"} <= set(info["final"])
    a = load_file(str(tmp_path / "snaps" / "step_00002" / "model.safetensors"))
    b = load_file(str(tmp_path / "short" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from genrl.policies import load_policy

    assert load_policy(str(tmp_path / "long"), lora_rank=2).mask_id == 1
