"""`genrl pretrain shapes` on a tiny model: writes a loadable ShapesPipeline, seeded (same seed -> same weights)."""

import pytest
import torch
from safetensors.torch import load_file

from genrl.cli import main
from genrl.policies import load_policy
from genrl.shapes.model import ShapesModelConfig
from genrl.shapes.pretrain import PretrainConfig, pretrain

TINY = ShapesModelConfig(resolution=16, patch_size=4, num_layers=1, num_attention_heads=2, attention_head_dim=8,
                         text_hidden=16, text_layers=1, text_heads=2)


def _weights(d):
    return load_file(f"{d}/transformer/diffusion_pytorch_model.safetensors")


def test_pretrain_seeded_and_loadable(tmp_path):
    cfg = PretrainConfig(steps=3, batch_size=4, seed=1, threads=1, warmup=1)
    res = pretrain(str(tmp_path / "a"), cfg, TINY, log=lambda s: None)
    pretrain(str(tmp_path / "b"), cfg, TINY, log=lambda s: None)
    assert res["steps"] == 3
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pol = load_policy(str(tmp_path / "a"))
    assert pol.noise_shape(2) == (2, 3, 16, 16)
    assert pol.prediction == "x0"  # the default recipe; recorded in model_index.json


def test_pretrain_v_prediction_and_init_mismatch(tmp_path):
    cfg = PretrainConfig(steps=1, batch_size=2, threads=1, warmup=1, prediction="v")
    pretrain(str(tmp_path / "v"), cfg, TINY, log=lambda s: None)
    assert load_policy(str(tmp_path / "v")).prediction == "v"
    with pytest.raises(ValueError, match="--prediction v"):
        pretrain(str(tmp_path / "w"), PretrainConfig(steps=1, init_from=str(tmp_path / "v")), log=lambda s: None)


def test_pretrain_cli_rejects_bad_input(capsys, tmp_path):
    assert main(["pretrain", "shapes", "--out", str(tmp_path / "x"), "--resolution", "30"]) == 2
    assert "--resolution" in capsys.readouterr().err


def test_pretrain_continues_from_init(tmp_path):
    pretrain(str(tmp_path / "a"), PretrainConfig(steps=1, batch_size=2, threads=1, warmup=1), TINY, log=lambda s: None)
    cfg = PretrainConfig(steps=1, batch_size=2, threads=1, warmup=1, init_from=str(tmp_path / "a"))
    pretrain(str(tmp_path / "b"), cfg, log=lambda s: None)  # default (large) model config is taken from init
    assert load_policy(str(tmp_path / "b")).noise_shape(1) == (1, 3, 16, 16)
