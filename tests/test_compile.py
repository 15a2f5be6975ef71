"""run.compile: the denoiser is compiled in place and the run stays exact on resume; without a C++ compiler the
run falls back to eager and says so."""

import pytest
from test_nft_run import build_tiny_shapes, resume_matches_straight_run, tiny_raw

import genrl.compile
from genrl.config import load_config
from genrl.loop import Trainer

AWM = {"name": "awm", "n_train": 2, "time_type": "discrete_wo_init", "kl_beta": 1e-3, "ema_beta": 1.0}
COMPILE = {"seed": 1, "tensorboard": False, "compile": True}


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return build_tiny_shapes(str(tmp_path_factory.mktemp("shapes") / "base"))


def test_compile_targets_and_eager_fallback(tiny_shapes, tmp_path, monkeypatch):
    monkeypatch.setattr(genrl.compile, "cpu_compiler", lambda: None)
    logs = []
    trainer = Trainer(load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r"), AWM, run=COMPILE)),
                      progress=False, log_fn=logs.append)
    assert list(trainer.policy.compile_targets()) == ["transformer"]
    assert any("no C++ compiler" in m and "running eager" in m for m in logs)
    assert trainer.policy.transformer._compiled_call_impl is None  # left eager


@pytest.mark.slow
def test_compiled_run_matches_eager_and_resumes_exactly(tiny_shapes, tmp_path):
    import json

    import torch
    from torch._dynamo.utils import counters

    runs = {}
    for name, run in (("eager", {**COMPILE, "compile": False}), ("compiled", COMPILE)):
        d = tmp_path / name
        trainer = Trainer(load_config(raw=tiny_raw(tiny_shapes, str(d), AWM, run=run)), progress=False)
        assert (trainer.policy.transformer._compiled_call_impl is not None) == (name == "compiled")
        counters.clear()
        trainer.run()
        runs[name] = [json.loads(line) for line in open(d / "metrics.jsonl")]
    # rollout, update (forward + backward), base and EMA forwards compiled, none fell back to eager
    assert counters["stats"]["unique_graphs"] >= 2 and counters["frames"]["ok"] == counters["frames"]["total"]
    for a, b in zip(runs["eager"], runs["compiled"], strict=True):  # same function, other rounding
        assert a["train/reward_mean"] == pytest.approx(b["train/reward_mean"], abs=1e-6)
        assert a["train/fm_error"] == pytest.approx(b["train/fm_error"], rel=1e-3)
    torch._dynamo.reset()
    resume_matches_straight_run(tiny_shapes, tmp_path / "resume", AWM, run=COMPILE)


# ---- the other families: what each compiles, and a compiled run that matches eager ------------------------------
def _robot_cfg(tmp_path, run_dir, compile_):
    from robot_helpers import tiny_robot_policy, tiny_robot_raw

    pol = tiny_robot_policy(str(tmp_path / "robot"))
    return load_config(raw=tiny_robot_raw(pol, str(run_dir), run={**COMPILE, "compile": compile_, "threads": 1},
                                          checkpoint={"every": 0}))


def _dllm_cfg(tmp_path, run_dir, compile_):
    from dllm_helpers import _register_test_reward, tiny_dllm, tiny_dllm_raw

    _register_test_reward()
    model = tiny_dllm(str(tmp_path / "dllm"))
    return load_config(raw=tiny_dllm_raw(model, str(run_dir), {"name": "bgpo", "mc_samples": 2},
                                         run={**COMPILE, "compile": compile_}, checkpoint={"every": 0}))


def test_compile_targets_of_every_family(tiny_shapes, tmp_path):
    from genrl.policies import load_policy
    from genrl.worlds.shapes3d.model import Shapes3DModelConfig, build_model, save_pipeline

    cfg3d = Shapes3DModelConfig(num_layers=1, ffn_dim=32, num_attention_heads=2, attention_head_dim=8, text_dim=16,
                                text_layers=1)
    save_pipeline(str(tmp_path / "vox"), *build_model(cfg3d), cfg3d)
    assert list(load_policy(str(tmp_path / "vox"), lora_rank=2).compile_targets()) == ["transformer"]
    for build, name in ((_robot_cfg, "expert"), (_dllm_cfg, "model")):
        cfg = build(tmp_path, tmp_path / name, False)
        assert list(load_policy(cfg.model.path, lora_rank=cfg.model.lora_rank).compile_targets()) == [name]


@pytest.mark.slow
@pytest.mark.parametrize("build", [_robot_cfg, _dllm_cfg], ids=["robot", "dllm"])
def test_compiled_run_matches_eager_for_robot_and_dllm(build, tmp_path):
    import json

    import torch

    rows = {}
    for c in (False, True):
        trainer = Trainer(build(tmp_path, tmp_path / f"run{c}", c), progress=False)
        assert (next(iter(trainer.policy.compile_targets().values()))._compiled_call_impl is not None) == c
        trainer.run()
        rows[c] = [json.loads(line) for line in open(tmp_path / f"run{c}" / "metrics.jsonl")]
    torch._dynamo.reset()
    keys = [k for r in rows[False] for k in r if k.startswith("train/") and isinstance(r[k], float)]
    assert keys
    for a, b in zip(rows[False], rows[True], strict=True):
        for k in keys:
            if k in a:
                assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5), k
