"""CTRL through the real SD3 and FLUX adapters on tiny random pipelines: the shipped SD3.5 config (reference
settings, sizes shrunk) trains a step with CFG on both models and a differentiable VAE decode; the condition
embedding of SD3 and FLUX is added to temb, is off in the base, and is saved / loaded with the LoRA."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from tiny_pipelines import build_flux, build_sd3, one_thread

from genrl.config import load_config
from genrl.loop import Trainer
from genrl.policies import load_policy
from genrl.policies.condition import attach_condition, get_condition, label_ids
from rewards.classifier import ImageClassifier

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.mark.slow
def test_sd35_ctrl_config_runs_on_tiny_sd3(tmp_path):
    model = build_sd3(str(tmp_path / "sd3"))
    raw = yaml.safe_load(open("configs/sd35/ctrl_compressibility.yaml"))
    labels = raw["algorithm"]["labels"]
    ImageClassifier(labels, widths=(4, 4, 4), input_size=32).save_pretrained(str(tmp_path / "clf"))
    (tmp_path / "p.txt").write_text("a red cat\na cat\n")
    raw["model"].update(path=model, options={"max_sequence_length": 8})
    raw["run"].update(dir=str(tmp_path / "run"), tensorboard=False, mixed_precision="no")
    raw["data"]["prompts"] = str(tmp_path / "p.txt")
    raw["sample"].update(resolution=32, steps=3, groups_per_step=2, batch_size=2)
    raw["train"].update(steps=1, batch_size=2, updates_per_step=1)
    raw["algorithm"]["classifier"] = str(tmp_path / "clf")
    raw["reward_options"]["classifier"]["path"] = str(tmp_path / "clf")
    raw["eval"]["every"] = 0
    cfg = load_config(raw=raw)
    assert cfg.sample.method == "ddim" and cfg.sample.noise_level == 1.0 and cfg.sample.cfg_scale > 1
    trainer = Trainer(cfg, progress=False)
    emb = get_condition(trainer.policy.transformer)
    assert emb.labels == labels and emb.weight.shape == (5, 16)  # 4 labels + NULL, SD3 inner dim
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-3, 1e-2]
    trainer.run()
    assert emb.weight[:4].abs().sum() > 0 and torch.equal(emb.weight[4], torch.zeros(16))
    lora = tmp_path / "run" / "checkpoints" / "step_000001" / "lora"
    assert os.path.isfile(lora / "pytorch_lora_weights.safetensors")
    assert json.load(open(lora / "condition.json"))["labels"] == labels
    pol = load_policy(model, lora_rank=4, max_sequence_length=8, device="cpu")
    pol.load_trainable(str(lora))
    assert torch.equal(get_condition(pol.transformer).weight, emb.weight.detach())


def test_flux_condition_embedding(tmp_path):
    model = build_flux(str(tmp_path / "flux"))
    pol = load_policy(model, lora_rank=4, max_sequence_length=8, device="cpu")
    x = torch.randn(2, *pol.noise_shape(1, 32)[1:])
    cond = pol.encode(["a cat", "a dog"])
    with torch.no_grad():
        v0 = pol.velocity(x, torch.tensor(0.7), cond)
        emb = attach_condition(pol.transformer, ["a", "b"])
        c = {**cond, "condition": label_ids(pol.transformer, ["a", "b"])}
        assert torch.equal(pol.velocity(x, torch.tensor(0.7), c), v0)  # zero init: the base exactly
        emb.weight[:2].normal_()
        assert not torch.allclose(pol.velocity(x, torch.tensor(0.7), c), v0)
        with pol.disable_adapter():
            assert torch.equal(pol.velocity(x, torch.tensor(0.7), c), v0)
    pol.save_trainable(str(tmp_path / "lora"))
    pol2 = load_policy(model, lora_rank=4, max_sequence_length=8, device="cpu")
    pol2.load_trainable(str(tmp_path / "lora"))
    assert torch.equal(get_condition(pol2.transformer).weight, emb.weight)
