"""DiffusionNFT on the one loop: a 2-step run on a tiny random shapes model; rollouts come from the old policy;
the old policy follows its soft-update schedule and is saved for resume."""

import json
import os

import pytest
import torch
from loop_helpers import tiny_shapes_model

from genrl.algorithms import Algorithm, get_algorithm
from genrl.config import load_config
from genrl.loop import Trainer

build_tiny_shapes = tiny_shapes_model  # a tiny random ShapesPipeline (16 px, 1 layer) saved to disk


def tiny_raw(model: str, run_dir: str, algorithm: dict, **sections) -> dict:
    raw = {
        "model": {"path": model, "lora_rank": 4},
        "run": {"dir": run_dir, "seed": 1, "tensorboard": False},
        "sample": {"steps": 4, "method": "euler", "noise_level": 0.0, "group_size": 2, "groups_per_step": 2,
                   "batch_size": 4},
        "advantage": {"filter_zero_std": False},
        "train": {"steps": 2, "batch_size": 2, "lr": 1e-2},
        "algorithm": algorithm,
        "rewards": {"shapes": 1.0},
        "eval": {"every": 0},
        "checkpoint": {"every": 0},
    }
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return build_tiny_shapes(str(tmp_path_factory.mktemp("shapes") / "base"))


def test_nft_two_step_run(tiny_shapes, tmp_path):
    run_dir = str(tmp_path / "run")
    cfg = load_config(raw=tiny_raw(tiny_shapes, run_dir, {"name": "nft", "beta": 1.0, "kl_beta": 1e-4,
                                                          "decay_type": 1}))
    trainer = Trainer(cfg, progress=False)
    algo = trainer.algo
    assert type(algo) is get_algorithm("nft")
    before = {k: v.clone() for k, v in trainer.policy.trainable_state().items()}
    res = trainer.run()
    assert res.steps_done == 2
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    train_rows = [r for r in rows if "train/loss" in r]
    assert len(train_rows) == 2
    for r in train_rows:
        for k in ("train/loss", "train/policy_loss", "train/loss_pos", "train/loss_neg", "train/kl_loss"):
            assert r[k] == r[k] and abs(r[k]) < 1e6  # finite
        assert r["train/updates"] == 1
    after = trainer.policy.trainable_state()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # decay after update 1 is 0.001, after update 2 is 0.002: old = mostly the current weights, not the initial
    k = next(k for k in before if not torch.equal(before[k], after[k]))
    assert not torch.equal(algo.old[k], before[k])
    # the old policy is part of the checkpointed algorithm state
    st = torch.load(os.path.join(run_dir, "checkpoints", "step_000002", "state.pt"), weights_only=True)
    assert torch.equal(st["algorithm"]["old"][k], algo.old[k].cpu())


def test_nft_rollout_uses_the_old_policy(tiny_shapes, tmp_path):
    cfg = load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r"), {"name": "nft"}))
    trainer = Trainer(cfg, progress=False)
    pol, algo = trainer.policy, trainer.algo
    # make the old policy differ from the current one
    algo.old = {k: v + 0.05 * torch.randn_like(v) for k, v in pol.trainable_state().items()}
    prompts, groups = ["a red circle", "two blue squares"], torch.tensor([0, 1])
    b_nft = algo.rollout(pol, prompts, groups, trainer._ctx(0))
    with pol.use_trainable(algo.old):
        b_old = Algorithm.rollout(algo, pol, prompts, groups, trainer._ctx(0))
    b_cur = Algorithm.rollout(algo, pol, prompts, groups, trainer._ctx(0))
    assert torch.equal(b_nft.samples, b_old.samples)
    assert not torch.equal(b_nft.samples, b_cur.samples)
    assert "log_probs" not in b_nft  # only clean final samples are kept


def resume_matches_straight_run(model: str, tmp_path, algorithm: dict, **sections) -> None:
    """3 steps straight == 2 steps + `genrl train --resume` to 3 (weights, EMA and the algorithm's own state)."""
    from safetensors.torch import load_file

    from genrl.cli import main as cli
    from genrl.loop import train

    kw = {"checkpoint": {"every": 1}, **sections}
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(load_config(raw=tiny_raw(model, str(straight), algorithm, train={"steps": 3}, **kw)), progress=False)
    train(load_config(raw=tiny_raw(model, str(split), algorithm, train={"steps": 2}, **kw)), progress=False)
    assert cli(["train", "--resume", str(split), "train.steps=3", "--no-progress"]) == 0
    for name in ("trainable.safetensors", "ema.safetensors"):
        a = load_file(str(straight / "checkpoints" / "step_000003" / name))
        b = load_file(str(split / "checkpoints" / "step_000003" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(str(straight / "checkpoints" / "step_000003" / "state.pt"), weights_only=True)["algorithm"]
    sb = torch.load(str(split / "checkpoints" / "step_000003" / "state.pt"), weights_only=True)["algorithm"]
    for key in sa:
        assert all(torch.equal(sa[key][k], sb[key][k]) for k in sa[key])


@pytest.mark.slow
def test_nft_resume_is_exact(tiny_shapes, tmp_path):
    resume_matches_straight_run(tiny_shapes, tmp_path, {"name": "nft"})


def test_nft_refuses_cfg(tiny_shapes, tmp_path):
    cfg = load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r"), {"name": "nft"}, sample={"cfg_scale": 4.5}))
    with pytest.raises(ValueError, match="CFG-free"):
        Trainer(cfg, progress=False)


def test_checkpoint_without_run(tiny_shapes, tmp_path):
    """Benchmarks drive the step body by hand and then call checkpoint(): the run clocks exist from construction."""
    import json

    trainer = Trainer(load_config(raw=tiny_raw(tiny_shapes, str(tmp_path / "r"), {"name": "nft"})), progress=False)
    trainer.checkpoint()
    meta = json.load(open(tmp_path / "r" / "checkpoints" / "step_000000" / "meta.json"))
    assert meta["step"] == 0
