"""AWM on the one loop: a 2-step run on a tiny random shapes model; the EMA policy follows its schedule; the
first micro-batch is on-policy (ratio == 1)."""

import json
import os

import pytest
import torch
from test_nft_run import build_tiny_shapes, tiny_raw

from genrl.algorithms import get_algorithm
from genrl.config import load_config
from genrl.loop import Trainer

AWM = {"name": "awm", "n_train": 2, "time_type": "discrete_wo_init", "kl_beta": 1e-3, "ema_beta": 1.0}


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return build_tiny_shapes(str(tmp_path_factory.mktemp("shapes") / "base"))


def test_awm_two_step_run(tiny_shapes, tmp_path):
    run_dir = str(tmp_path / "run")
    cfg = load_config(raw=tiny_raw(tiny_shapes, run_dir, AWM))
    trainer = Trainer(cfg, progress=False)
    algo = trainer.algo
    assert type(algo) is get_algorithm("awm")
    init = {k: v.clone() for k, v in trainer.policy.trainable_state().items()}
    res = trainer.run()
    assert res.steps_done == 2
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    train_rows = [r for r in rows if "train/loss" in r]
    assert len(train_rows) == 2
    for r in train_rows:
        assert r["train/ratio_mean"] == 1.0  # strictly on-policy
        for k in ("train/loss", "train/policy_loss", "train/kl_loss", "train/kl_ema_loss", "train/fm_error"):
            assert r[k] == r[k] and abs(r[k]) < 1e6
    cur = trainer.policy.trainable_state()
    k = next(k for k in init if not torch.equal(init[k], cur[k]))
    # EMA decay after update 1 is 0.001 and after update 2 is 0.002: ema ~ current weights, not the initial ones
    assert not torch.equal(algo.ema[k], init[k])
    assert (algo.ema[k] - cur[k]).abs().max() < (init[k] - cur[k]).abs().max()
    st = torch.load(os.path.join(run_dir, "checkpoints", "step_000002", "state.pt"), weights_only=True)
    assert torch.equal(st["algorithm"]["ema"][k], algo.ema[k].cpu())


def test_awm_rejects_too_few_rollout_steps(tiny_shapes, tmp_path):
    cfg = load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r"), {**AWM, "n_train": 6}))
    with pytest.raises(ValueError, match="n_train"):
        Trainer(cfg, progress=False)
    assert not os.path.exists(tmp_path / "r")  # refused before anything was written
    with pytest.raises(ValueError, match="time_type"):
        load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r2"), {**AWM, "time_type": "bogus"}))


@pytest.mark.slow
def test_awm_resume_is_exact(tiny_shapes, tmp_path):
    from test_nft_run import resume_matches_straight_run

    resume_matches_straight_run(tiny_shapes, tmp_path, AWM)


def test_awm_with_sa_solver_rollouts(tiny_shapes, tmp_path):
    """The SD3.5 recipes' rollout sampler on the one loop: SA-Solver (tau 0.4), clean samples, any time type."""
    raw = tiny_raw(tiny_shapes, str(tmp_path / "run"), {**AWM, "time_type": "logit_normal"},
                   sample={"steps": 4, "method": "sa_solver", "noise_level": 0.4, "group_size": 2,
                           "groups_per_step": 2, "batch_size": 4})
    trainer = Trainer(load_config(raw=raw), progress=False)
    batch, _ = trainer.rollout_step(0)
    assert torch.isfinite(batch.samples).all() and "latents" not in batch
    res = trainer.run()
    assert res.steps_done == 2
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(r["train/ratio_mean"] == 1.0 for r in rows if "train/loss" in r)
