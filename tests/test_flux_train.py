"""End to end on a tiny FLUX pipeline: `genrl train` with the FLUX recipe's shape (SDE noise 0.9, guidance
embedding, no CFG, beta 0, LoRA on attention + feed-forwards) for 2 Flow-GRPO steps with jpeg_compressibility;
the LoRA loads into FluxPipeline and changes its output; the merged export matches it."""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from diffusers import FluxPipeline
from tiny_pipelines import build_flux, one_thread

from genrl.cli import main as cli
from genrl.config import load_config

RES = 32
PROMPTS = ["a red cat", "hello", "a cat", "red"]

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)  # tiny models: one torch thread


def _pipe(path):
    pipe = FluxPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe):
    noise = torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(3))
    return pipe(PROMPTS[:2], num_inference_steps=3, height=RES, width=RES, latents=noise, guidance_scale=3.5,
                max_sequence_length=8, output_type="pt").images


def test_shipped_flux_config_is_the_reference_recipe():
    c = load_config("configs/flux/pickscore_grpo.yaml")
    assert (c.model.family, c.model.lora_rank, c.model.lora_alpha) == ("flux", 64, 128)
    assert c.model.options["dtype"] == "bf16" and c.model.options["guidance_scale"] == 3.5
    assert (c.sample.steps, c.eval.steps, c.sample.noise_level, c.sample.cfg_scale) == (6, 28, 0.9, 1.0)
    assert c.algorithm.beta == 0 and c.run.mixed_precision == "bf16" and c.sample.group_size == 24


def test_flux_trains_two_steps_and_exports(tmp_path):
    model = build_flux(str(tmp_path / "model"))
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    raw = yaml.safe_load(open("configs/flux/pickscore_grpo.yaml"))
    raw["model"].update(path=model, lora_rank=4, lora_alpha=8)
    raw["model"]["options"].update(dtype="fp32", text_encoder_dtype="fp32", max_sequence_length=8,
                                   gradient_checkpointing=True)
    raw["run"].update(dir=str(tmp_path / "run"), mixed_precision="no", tensorboard=False)
    raw["data"]["prompts"] = str(tmp_path / "p.txt")
    raw["sample"].update(resolution=RES, steps=3, group_size=4, groups_per_step=2, batch_size=4)
    raw["train"].update(steps=2, lr=3e-2, batch_size=4, updates_per_step=1)
    raw["rewards"] = {"jpeg_compressibility": 1.0}
    raw["ema"]["every"] = 1
    raw["eval"].update(every=0)
    raw["checkpoint"].update(every=0)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    assert cli(["train", str(tmp_path / "cfg.yaml"), "--no-progress"]) == 0

    lora = tmp_path / "run" / "checkpoints" / "step_000002" / "lora"
    pipe = _pipe(model)
    base = _images(pipe)
    pipe.load_lora_weights(str(lora))
    tuned = _images(pipe)
    assert (tuned - base).abs().max() > 1e-4
    assert cli(["export", "--run", str(tmp_path / "run"), "--merge", "--out", str(tmp_path / "merged")]) == 0
    assert os.path.isfile(tmp_path / "merged" / "model_index.json")
    torch.testing.assert_close(_images(_pipe(str(tmp_path / "merged"))), tuned, atol=1e-5, rtol=0)
