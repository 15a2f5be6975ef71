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
