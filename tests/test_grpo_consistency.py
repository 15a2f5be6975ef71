"""Rollout/training consistency of Flow-GRPO on a tiny shapes model: the first micro-batch's ratio is 1 (the
log-prob recomputed in training equals the one stored at rollout) and the KL to the reference is 0 before the
first update, for the SDE kinds, CFG, and the window variant."""

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model

from genrl.loop import Trainer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


@pytest.mark.parametrize(
    "sample",
    [
        {"method": "flow_grpo", "noise_level": 0.7},
        {"method": "flow_grpo", "noise_level": 0.7, "cfg_scale": 3.0},
        {"method": "cps", "noise_level": 0.8, "sde_window_size": 2, "sde_window_range": [0, 3]},
        {"method": "dance", "noise_level": 0.3, "same_noise": True},
    ],
)
def test_first_ratio_is_one_and_kl_zero(model, tmp_path, sample):
    cfg = tiny_config(model, str(tmp_path / "run"), sample=sample)
    tr = Trainer(cfg, progress=False)
    batch, _ = tr.rollout_step(0)
    chosen, info = tr.compute_advantages(batch, 0)
    batch.advantages = info["adv"]
    assert batch.latents.shape[:2] == (8, 5) and batch.log_probs.shape == (8, 4)
    if sample.get("sde_window_size"):
        assert (batch.sde_mask.sum(1) == 2).all()  # each sample: its rollout batch's window
    terms = []
    # every sample of the step, re-batched across the two rollout batches as the loop's shuffle does
    for idx in torch.randperm(8, generator=torch.Generator().manual_seed(0)).reshape(2, 4):
        mb_terms = list(tr.algo.losses(tr.policy, batch.select(idx), tr._ctx(0, salt=1)))
        if sample.get("sde_window_size"):  # the union of the windows in this micro-batch (windows of 2 in [0, 3))
            assert len(mb_terms) in (2, 3)
        else:
            assert len(mb_terms) == 3  # int(4 * .99)
        terms += mb_terms
    for loss, m in terms:
        assert torch.isfinite(loss)
        assert m["ratio_max_dev"] < 1e-5, m
        assert m["clipfrac"] == 0.0
        assert m["kl_loss"] == 0.0  # LoRA starts at zero: policy == reference
        assert m["approx_kl"] < 1e-10


def test_update_moves_policy_and_kl(model, tmp_path):
    cfg = tiny_config(model, str(tmp_path / "run"), train={"lr": 0.05})
    tr = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in tr.policy.trainable_state().items()}
    batch, _ = tr.rollout_step(0)
    chosen, info = tr.compute_advantages(batch, 0)
    batch.advantages = info["adv"]
    out = tr.train_step(batch, chosen, 0)
    assert out["train/updates"] == 1 and tr.update == 1
    after = tr.policy.trainable_state()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    mb = batch.select(chosen[:4])
    ms = [m for _, m in tr.algo.losses(tr.policy, mb, tr._ctx(0, salt=5))]
    assert max(m["kl_loss"] for m in ms) > 0  # now away from the reference


def test_window_per_rollout_batch_and_loss_weights(model, tmp_path):
    """window_per=batch: each rollout batch draws its own window (as the reference); a micro-batch mixing windows
    trains step j only on the samples whose window holds it, each term weighted len(sub) / (B n) so the terms of a
    sample add up to the mean over its n trained steps."""
    sample = {"method": "flow_grpo", "noise_level": 0.7, "sde_window_size": 1, "sde_window_range": [0, 4],
              "batch_size": 1}
    cfg = tiny_config(model, str(tmp_path / "run"), sample=sample, train={"batch_size": 8})
    tr = Trainer(cfg, progress=False)
    batch, _ = tr.rollout_step(0)
    starts = batch.sde_mask.float().argmax(1)
    assert len(set(starts.tolist())) > 1  # 8 batches of one: windows differ
    chosen, info = tr.compute_advantages(batch, 0)
    batch.advantages = info["adv"]
    terms = list(tr.algo.losses(tr.policy, batch, tr._ctx(0, salt=1)))
    assert len(terms) == len(set(starts.tolist()))
    for _loss, m in terms:
        assert m["ratio_max_dev"] < 1e-5
    # the same micro-batch with the window shared by the step: one term for all 8 samples
    cfg2 = tiny_config(model, str(tmp_path / "run2"), sample=sample, train={"batch_size": 8},
                       algorithm={"name": "grpo", "window_per": "step"})
    tr2 = Trainer(cfg2, progress=False)
    b2, _ = tr2.rollout_step(0)
    assert len(set(b2.sde_mask.float().argmax(1).tolist())) == 1


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_inference_mode_forwards_match_no_grad_and_stay_out_of_autograd(model, tmp_path, monkeypatch, lora_rank):
    """The rollout's and the reference's forwards run under torch.inference_mode: the batch they leave holds no
    inference tensors (a full fine-tune's patch embedding saves its input for backward), training backpropagates,
    and every value equals the torch.no_grad path (GENRL_INFERENCE_MODE=0) bit for bit."""

    def one_step(run):
        cfg = tiny_config(model, str(tmp_path / run), [f"model.lora_rank={lora_rank}"], sample={"cfg_scale": 3.0})
        tr = Trainer(cfg, progress=False)
        assert tr._ctx(0).inference_mode == (run == "inference")
        batch, _ = tr.rollout_step(0)
        batch.advantages = tr.compute_advantages(batch, 0)[1]["adv"]
        tensors = [v for v in [*batch._f.values(), *batch.cond.values()] if isinstance(v, torch.Tensor)]
        assert not any(v.is_inference() for v in tensors)
        total = sum(loss for loss, _ in tr.algo.losses(tr.policy, batch, tr._ctx(0, salt=1)))
        total.backward()
        grads = [p.grad.clone() for p in tr.policy.trainable_parameters()]
        assert any(g.abs().sum() > 0 for g in grads)
        return batch, total.detach(), grads

    batch, loss, grads = one_step("inference")
    monkeypatch.setenv("GENRL_INFERENCE_MODE", "0")  # the opt-out: torch.no_grad
    ref_batch, ref_loss, ref_grads = one_step("no_grad")
    assert torch.equal(batch.latents, ref_batch.latents) and torch.equal(batch.log_probs, ref_batch.log_probs)
    assert torch.equal(loss, ref_loss) and all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
