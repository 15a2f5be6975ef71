"""End to end on a tiny SD3 pipeline: `genrl train` (2 Flow-GRPO steps, CFG, jpeg_compressibility), then the
checkpoint's LoRA in diffusers and `genrl export` (LoRA and --merge) loaded back with from_pretrained."""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from diffusers import StableDiffusion3Pipeline
from tiny_pipelines import build_sd3, one_thread

from genrl.cli import main as cli

RES = 32
PROMPTS = ["a red cat", "hello", "a cat", "red"]

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)  # tiny models: one torch thread


def sd3_run_config(model: str, run_dir: str, prompts_file: str, **over) -> dict:
    cfg = {
        "model": {"path": model, "family": "sd3", "lora_rank": 4, "options": {"max_sequence_length": 8}},
        "run": {"dir": run_dir, "seed": 0, "tensorboard": False},
        "data": {"prompts": prompts_file},
        "sample": {"resolution": RES, "steps": 3, "shift": 3.0, "method": "flow_grpo", "noise_level": 0.7,
                   "cfg_scale": 4.5, "group_size": 4, "groups_per_step": 2, "batch_size": 4},
        "train": {"steps": 2, "lr": 3e-2, "batch_size": 4, "updates_per_step": 1},
        "algorithm": {"name": "grpo", "beta": 0.04, "clip_range": 1e-4},
        "rewards": {"jpeg_compressibility": 1.0},
        "ema": {"enabled": True, "every": 1},
        "eval": {"every": 0},
        "checkpoint": {"every": 0},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v}
    return cfg


def write_prompts(path) -> str:
    path.write_text("\n".join(PROMPTS) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd3run")
    model = build_sd3(str(root / "model"))
    cfg_path = root / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(sd3_run_config(model, str(root / "run"), write_prompts(root / "p.txt"))))
    assert cli(["train", str(cfg_path), "--no-progress"]) == 0
    return model, str(root / "run")


def _pipe(path):
    pipe = StableDiffusion3Pipeline.from_pretrained(path, text_encoder_3=None, tokenizer_3=None, image_encoder=None,
                                                    feature_extractor=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe):
    noise = torch.randn(2, 4, RES // 2, RES // 2, generator=torch.Generator().manual_seed(3))
    return pipe(PROMPTS[:2], num_inference_steps=3, height=RES, width=RES, latents=noise, guidance_scale=4.5,
                max_sequence_length=8, output_type="pt").images


def test_trained_lora_loads_in_diffusers_and_changes_output(trained, tmp_path):
    model, run = trained
    ck = os.path.join(run, "checkpoints", "step_000002")
    assert os.path.isfile(os.path.join(ck, "lora", "pytorch_lora_weights.safetensors"))
    rows = (open(os.path.join(run, "metrics.jsonl")).read().splitlines())
    assert len([r for r in rows if "train/reward_mean" in r]) == 2
    pipe = _pipe(model)
    base = _images(pipe)
    pipe.load_lora_weights(os.path.join(ck, "lora"))
    tuned = _images(pipe)
    assert (tuned - base).abs().max() > 1e-4

    # genrl export (LoRA): the same file, loadable unchanged; --merge: a full pipeline with identical output
    assert cli(["export", "--run", run, "--out", str(tmp_path / "lora")]) == 0
    pipe2 = _pipe(model)
    pipe2.load_lora_weights(str(tmp_path / "lora"))
    torch.testing.assert_close(_images(pipe2), tuned)
    assert cli(["export", "--run", run, "--merge", "--out", str(tmp_path / "merged")]) == 0
    merged = _pipe(str(tmp_path / "merged"))
    assert not any("lora" in n for n, _ in merged.transformer.named_parameters())
    torch.testing.assert_close(_images(merged), tuned, atol=1e-5, rtol=0)


def test_export_raw_weights_and_bad_input(trained, tmp_path, capsys):
    model, run = trained
    assert cli(["export", "--run", run, "--raw", "--out", str(tmp_path / "raw")]) == 0
    assert os.path.isfile(tmp_path / "raw" / "pytorch_lora_weights.safetensors")
    assert not os.path.exists(tmp_path / "raw" / ".raw-tmp")
    from safetensors.torch import load_file

    raw = load_file(str(tmp_path / "raw" / "pytorch_lora_weights.safetensors"))
    ema = load_file(os.path.join(run, "checkpoints", "step_000002", "lora", "pytorch_lora_weights.safetensors"))
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)

    assert cli(["export", "--run", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert cli(["export", "--run", run, "--out", str(tmp_path / "raw")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli(["export", "--run", run, "--checkpoint", "step_000009", "--out", str(tmp_path / "y")]) == 2
    assert "not found" in capsys.readouterr().err


def test_merge_of_a_full_finetune(tmp_path):
    """Full fine-tuning (lora_rank 0) saves the transformer; --merge puts it into the base pipeline."""
    import json

    from genrl.cli.export import _merge
    from genrl.policies import load_policy

    model = build_sd3(str(tmp_path / "model"))
    policy = load_policy(model, lora_rank=0, max_sequence_length=8)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.02 * torch.randn_like(p))
    policy.save_trainable(str(tmp_path / "full"))
    info = json.load(open(tmp_path / "full" / "genrl_trainable.json"))
    assert info == {"kind": "full", "pipeline": "StableDiffusion3Pipeline"}
    _merge(model, str(tmp_path / "full"), info, str(tmp_path / "merged"), None)
    merged = _pipe(str(tmp_path / "merged"))
    for (n, a), b in zip(policy.transformer.named_parameters(), merged.transformer.parameters()):
        assert torch.equal(a, b), n
    assert (_images(merged) - _images(_pipe(model))).abs().max() > 1e-4
