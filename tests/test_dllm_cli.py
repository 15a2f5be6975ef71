"""`genrl eval` / `genrl sample` on a text model, the shipped dLLM configs, and the LLaDA-8B recipes."""

from __future__ import annotations

import json
import os

import pytest
from dllm_helpers import tiny_dllm

from genrl.cli import main
from genrl.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_dllm(str(tmp_path_factory.mktemp("m")))


def test_eval_writes_overall_score_and_solved(model, tmp_path):
    out = tmp_path / "scores.json"
    assert main(["eval", "--model", model, "--split", "eval", "--out", str(out), "--diffusion-steps", "4",
                 "--block-length", "8"]) == 0
    rep = json.loads(out.read_text())
    assert set(rep["overall"]) >= {"score", "solved"} and rep["overall"]["n"] == 192
    assert rep["protocol"]["diffusion_steps"] == 4 and rep["protocol"]["temperature"] == 0.0


def test_eval_bad_blocks_is_one_line(model, tmp_path, capsys):
    assert main(["eval", "--model", model, "--block-length", "5", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not divide into blocks" in err and len(err.splitlines()) == 1 and not (tmp_path / "x.json").exists()


def test_sample_writes_markdown_with_scores(model, tmp_path):
    assert main(["sample", "--model", model, "--prompt", "sudoku:1030|0402|2000|0001=", "--num", "3", "--out",
                 str(tmp_path), "--diffusion-steps", "4"]) == 0
    text = (tmp_path / "samples.md").read_text()
    assert text.count("| `sudoku:1030") == 3


@pytest.mark.parametrize("name", ["bgpo_sudoku", "diffu_grpo_sudoku", "llada8b_bgpo_math", "llada8b_diffu_grpo_math"])
def test_shipped_configs_load(name):
    cfg = load_config(os.path.join(ROOT, "configs", "dllm", f"{name}.yaml"))
    a = cfg.algorithm
    if name == "llada8b_bgpo_math":  # the published BGPO recipe
        assert (a.mc_samples, cfg.train.lr, a.response_length, a.block_length) == (16, 5e-7, 512, 32)
        assert cfg.sample.groups_per_step == 16 and cfg.model.trust_remote_code
    if name == "llada8b_diffu_grpo_math":  # d1's defaults
        assert (cfg.train.inner_epochs, a.clip_range, a.beta, a.prompt_mask_prob, cfg.train.lr) == \
            (12, 0.5, 0.04, 0.15, 3e-6)
    if name == "diffu_grpo_sudoku":
        assert cfg.train.inner_epochs == 8 and a.temperature == 1.0 and cfg.train.lr == 1e-4
    if name == "bgpo_sudoku":
        assert a.mc_samples == 16 and cfg.train.updates_per_step == 1 and cfg.train.inner_epochs == 1
