"""The dLLM methods on the one loop: 2-step runs, exact resume, d1's loss pieces, bad input (nothing written)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from dllm_helpers import tiny_dllm, tiny_dllm_config, tiny_dllm_raw
from safetensors.torch import load_file

from genrl.config import load_config
from genrl.loop import Trainer, train


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_dllm(str(tmp_path_factory.mktemp("m")))


@pytest.mark.parametrize("algo, extra", [
    ({"name": "bgpo", "mc_samples": 2}, {}),
    ({"name": "elbo_grpo", "mc_samples": 2}, {"eval": {"every": 0}}),
    ({"name": "diffu_grpo"}, {"train": {"inner_epochs": 2}, "eval": {"every": 0}}),
])
def test_two_steps(model, tmp_path, algo, extra):
    cfg = tiny_dllm_config(model, str(tmp_path / "run"), algo, **extra)
    res = train(cfg, progress=False)
    rows = [json.loads(x) for x in open(os.path.join(res.run_dir, "metrics.jsonl"))]
    steps = [r for r in rows if "train/updates" in r]
    assert res.steps_done == 2 and len(steps) == 2
    assert all(r["train/updates"] == cfg.train.inner_epochs and r["train/skipped_updates"] == 0 for r in steps)
    lora = load_file(os.path.join(res.run_dir, "checkpoints", "step_000002", "trainable.safetensors"))
    assert any(k.endswith("lora_B.default.weight") and v.abs().max() > 0 for k, v in lora.items())  # it moved
    if cfg.eval.every:
        md = open(os.path.join(res.run_dir, res.last_eval["eval/grid"])).read()
        assert "sudoku:" in md and "eval/sudoku/solved" in res.last_eval


def test_exact_resume(model, tmp_path):
    algo = {"name": "bgpo", "mc_samples": 2}
    kw = {"train": {"steps": 2}, "eval": {"every": 0}, "checkpoint": {"every": 1}}
    straight = train(tiny_dllm_config(model, str(tmp_path / "a"), algo, **kw), progress=False)
    half = tiny_dllm_config(model, str(tmp_path / "b"), algo, train={"steps": 1}, eval={"every": 0},
                            checkpoint={"every": 1})
    train(half, progress=False)
    resumed = train(tiny_dllm_config(model, str(tmp_path / "b"), algo, **kw), resume=True, progress=False)
    a = load_file(os.path.join(straight.run_dir, "checkpoints", "step_000002", "trainable.safetensors"))
    b = load_file(os.path.join(resumed.run_dir, "checkpoints", "step_000002", "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_diffu_grpo_pieces(model):
    from genrl.algorithms.diffu_grpo import completion_mask, masked_logps
    from genrl.policies import load_policy

    eos = 2
    resp = torch.tensor([[5, 6, 2, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    assert completion_mask(resp, eos).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    pol = load_policy(model, lora_rank=2)
    tokens = torch.tensor([pol.prompt_ids(["sudoku:1234|3412|2143|4321="])[0] + [4] * 16] * 64)
    keys = torch.ones_like(tokens, dtype=torch.bool)
    seeds = torch.arange(64)
    a = masked_logps(pol, tokens, keys, 27, seeds, 0.15)
    torch.testing.assert_close(a, masked_logps(pol, tokens, keys, 27, seeds, 0.15))  # same seeds, same masks
    assert not torch.allclose(a, masked_logps(pol, tokens, keys, 27, seeds + 1, 0.15))
    full = masked_logps(pol, tokens[:1], keys[:1], 27, seeds[:1], 1.0)  # everything masked: prompt-free
    blank = masked_logps(pol, torch.cat([torch.full((1, 27), 1), tokens[:1, 27:]], 1), keys[:1], 27, seeds[:1], 0.0)
    torch.testing.assert_close(full, blank)


def _no_run_dir(cfg, match):
    with pytest.raises(ValueError, match=match):
        Trainer(cfg, progress=False)
    assert not os.path.exists(cfg.run.dir)


def test_bad_input_is_refused_before_writing(model, tmp_path):
    from loop_helpers import tiny_raw, tiny_shapes_model

    run = str(tmp_path / "r")
    # an image algorithm on a text model, and a text algorithm on an image model
    raw = tiny_dllm_raw(model, run, {})
    raw["algorithm"] = {"name": "grpo"}
    _no_run_dir(load_config(raw=raw), "masked diffusion LM")
    shapes = tiny_shapes_model(str(tmp_path / "shapes"))
    raw = tiny_raw(shapes, run)
    raw["algorithm"] = {"name": "bgpo"}
    _no_run_dir(load_config(raw=raw), "pick a matching algorithm")
    # response length that does not divide into blocks
    _no_run_dir(tiny_dllm_config(model, run, {"name": "bgpo", "block_length": 5}), "does not divide into blocks")
    # prompt + response longer than the context (64 tokens; sudoku prompts have 27)
    _no_run_dir(tiny_dllm_config(model, run, {"name": "diffu_grpo", "response_length": 48, "block_length": 16,
                                              "diffusion_steps": 48}), "exceeds the model's context of 64")


def test_eval_remasking_is_its_own_setting(model, tmp_path):
    """Rollouts may unmask in random order while evaluation keeps low-confidence decoding (and vice versa)."""
    from genrl.masked_rollout import MaskedDLLMConfig, text_eval_outputs, validate_generation
    from genrl.policies import load_policy

    policy = load_policy(model, lora_rank=4)
    prompts = ["4x4 sudoku", "another puzzle", "third"]
    base = text_eval_outputs(policy, prompts, [0, 1, 2], MaskedDLLMConfig()).outputs
    rand_rollouts = MaskedDLLMConfig(remasking="random", eval_remasking="low_confidence")
    assert text_eval_outputs(policy, prompts, [0, 1, 2], rand_rollouts).outputs == base
    rand_eval = MaskedDLLMConfig(eval_remasking="random", eval_temperature=1.0)
    again = MaskedDLLMConfig(remasking="random", eval_temperature=1.0)
    assert (text_eval_outputs(policy, prompts, [5, 5, 5], rand_eval).outputs
            == text_eval_outputs(policy, prompts, [5, 5, 5], again).outputs)
    with pytest.raises(ValueError, match="algorithm.eval_remasking must be one of"):
        validate_generation(MaskedDLLMConfig(eval_remasking="lowest"))
