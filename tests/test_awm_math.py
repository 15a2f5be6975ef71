"""AWM math against hand-computed tiny cases (flow_methods.md §3.3)."""

import math
import os

import pytest
import torch

from genrl.algorithms.awm import (
    awm_loss,
    ema_policy_decay,
    ghuber_logprob,
    scale_advantages,
    soft_update_,
    stratified_indices,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ghuber_weighting_values_in_float64():
    # e=16, p=0.25, t=1: -((16)^.25 - 1e-10^.25)/.25 = -4*(2 - 10^-2.5)
    l = ghuber_logprob(torch.tensor([16.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.5]), p=0.25)
    assert l.dtype == torch.float64
    assert l[0].item() == pytest.approx(-4 * (2 - 10**-2.5), rel=1e-9)  # (16+1e-10)^.25 ~ 2
    assert abs(l[1].item()) < 1e-12  # zero error -> zero
    assert l[2].item() == pytest.approx(-0.5 * 4 * ((1 + 1e-10) ** 0.25 - 10**-2.5), rel=1e-12)
    with pytest.raises(ValueError, match="p must be"):
        ghuber_logprob(torch.ones(1), torch.ones(1), p=0.0)


def test_scale_advantages_to_unit_interval():
    a = scale_advantages(torch.tensor([-9.0, -5.0, -1.0, 0.0, 2.5, 7.0]))
    assert a.tolist() == pytest.approx([-1.0, -1.0, -0.2, 0.0, 0.5, 1.0])


def test_awm_loss_value_and_gradient_hand_computed():
    # v_theta - v* = [1, 1] -> e = 1; t = 0.5, A = 0.5, p = 0.25.
    # ratio == 1 -> L = -A = -0.5. dL/dv = A * t * (e+1e-10)^(p-1) * 2 (v - v*) / D = 0.5*0.5*1*2*1/2 = 0.25
    v = torch.tensor([[1.0, 1.0]], requires_grad=True)
    target = torch.zeros(1, 2)
    loss, m = awm_loss(v, target, torch.tensor([0.5]), torch.tensor([0.5]))
    assert loss.item() == pytest.approx(-0.5)
    assert m["ratio_mean"] == 1.0
    loss.backward()
    assert v.grad.tolist()[0] == pytest.approx([0.25, 0.25], rel=1e-6)
    # negative advantage pushes away from the target (gradient flips)
    v2 = torch.tensor([[1.0, 1.0]], requires_grad=True)
    awm_loss(v2, target, torch.tensor([0.5]), torch.tensor([-0.5]))[0].backward()
    assert v2.grad.tolist()[0] == pytest.approx([-0.25, -0.25], rel=1e-6)
    # uniform weighting: l = -e, grad = A * 2 (v - v*) / D = 0.5
    v3 = torch.tensor([[1.0, 1.0]], requires_grad=True)
    awm_loss(v3, target, torch.tensor([0.5]), torch.tensor([0.5]), weighting="uniform")[0].backward()
    assert v3.grad.tolist()[0] == pytest.approx([0.5, 0.5])


def test_awm_ppo_clip_with_off_policy_logprob():
    # ratio = exp(l - l_old); with l_old = l - log 2 the ratio is 2; clip 0.2 -> A>0 uses 1.2
    v = torch.tensor([[1.0, 1.0]])
    t = torch.tensor([0.5])
    l = ghuber_logprob(torch.tensor([1.0]), t)
    loss, m = awm_loss(v, torch.zeros(1, 2), t, torch.tensor([1.0]), clip_range=0.2, logprob_old=l - math.log(2))
    assert m["ratio_mean"] == pytest.approx(2.0)
    assert loss.item() == pytest.approx(-1.2)


def test_awm_kl_terms():
    v = torch.tensor([[1.0, 1.0]])
    loss, m = awm_loss(
        v, torch.tensor([[1.0, 1.0]]), torch.tensor([0.5]), torch.tensor([0.0]),
        v_ref=torch.tensor([[0.0, 1.0]]), kl_beta=0.1, v_ema=torch.tensor([[3.0, 1.0]]), ema_beta=1.0,
    )
    # kl = mean([1, 0]) = .5 ; kl_ema = mean([4, 0]) = 2 ; L = 0 + .05 + 2
    assert m["kl_loss"] == pytest.approx(0.5) and m["kl_ema_loss"] == pytest.approx(2.0)
    assert loss.item() == pytest.approx(2.05)


def test_stratified_indices_discrete_wo_init_and_discrete():
    strata_wo = [{1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}]
    strata = [{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}]
    g = torch.Generator().manual_seed(0)
    seen = [set() for _ in range(6)]
    for _ in range(200):
        idx = stratified_indices(14, 6, "discrete_wo_init", generator=g).tolist()
        for k, i in enumerate(idx):
            assert i in strata_wo[k]
            seen[k].add(i)
        for k, i in enumerate(stratified_indices(14, 6, "discrete", generator=g).tolist()):
            assert i in strata[k]
    assert seen == strata_wo  # every index of every stratum is reachable
    with pytest.raises(ValueError, match="time_type"):
        stratified_indices(14, 6, "logit")
    with pytest.raises(ValueError, match="n_train"):
        stratified_indices(4, 6)


def test_ema_decay_schedule_and_update():
    assert [ema_policy_decay(s) for s in (0, 1, 100, 300, 10_000)] == pytest.approx([0.0, 0.001, 0.1, 0.3, 0.3])
    ema = {"w": torch.tensor([1.0])}
    soft_update_(ema, {"w": torch.tensor([2.0])}, decay=0.3)
    assert ema["w"].item() == pytest.approx(1.7)  # 0.3*1 + 0.7*2


@pytest.mark.parametrize("task,kl,time_type,groups", [("geneval", 0.001, "discrete_wo_init", 72),
                                                      ("ocr", 0.003, "discrete_wo_init", 72),
                                                      ("pickscore", 0.0001, "discrete", 24)])
def test_shipped_sd35_configs_have_reference_defaults(task, kl, time_type, groups):
    from genrl.config import load_config

    cfg = load_config(f"{ROOT}/configs/sd35/{task}_awm.yaml")
    a, s = cfg.algorithm, cfg.sample
    assert a.name == "awm" and a.kl_beta == kl and a.time_type == time_type and a.n_train == 6
    assert a.weighting == "ghuber" and a.ghuber_p == 0.25 and a.ema_beta == 1.0 and a.ema_decay_cap == 0.3
    assert (s.steps, s.shift, s.cfg_scale, s.group_size, s.groups_per_step) == (14, 3.0, 1.0, 24, groups)
    assert cfg.train.updates_per_step == 1 and cfg.train.lr == 3e-4
    # the reference's rollout sampler, and its zero-std mask is computed but not applied
    assert s.method == "sa_solver" and s.noise_level == (0.0 if task == "pickscore" else 0.4)
    assert cfg.advantage.filter_zero_std is False


def test_discrete_with_init_starts_at_t1():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = stratified_indices(14, 6, "discrete_with_init", generator=g).tolist()
        assert idx[0] == 0 and len(idx) == 6
        # 5 strata of [1, 12): bounds floor(linspace(1, 12, 6)) = 1, 3, 5, 7, 9, 12
        for k, (lo, hi) in enumerate([(1, 3), (3, 5), (5, 7), (7, 9), (9, 12)]):
            assert lo <= idx[k + 1] < hi


def test_continuous_time_types():
    from genrl.algorithms.awm import train_times

    grid = torch.linspace(1, 0, 15)
    g = torch.Generator().manual_seed(0)
    t = train_times(grid, 4, 3, "logit_normal", time_shift=3.0, generator=g)
    assert t.shape == (12,) and (t >= 0.01).all() and (t < 1).all()
    assert torch.equal(t.reshape(4, 3), t.reshape(4, 3)[:, :1].expand(4, 3))  # shared by the batch
    # one time per stratum of the normal quantiles: sorted unshifted logits fall in successive quantile bins
    t0 = t.reshape(4, 3)[:, 0].double()
    q = torch.special.ndtr(torch.logit(t0 / (3 - 2 * t0))).sort().values  # undo the shift and the sigmoid
    for k in range(4):
        assert k / 4 - 1e-6 <= q[k] <= (k + 1) / 4 + 1e-6
    t = train_times(grid, 4, 5, "uniform", time_shift=1.0, generator=g).reshape(4, 5)
    assert (t >= 0.2).all() and (t <= 1).all()
    for j in range(5):  # every sample gets one time from each of the 4 strata of [0.2, 1]
        bins = ((t[:, j] - 0.2) / 0.2).floor().clamp_max(3).sort().values.tolist()
        assert bins == [0, 1, 2, 3]
    assert not torch.equal(t[:, 0], t[:, 1])  # per-sample times


def test_huber_weighting():
    from genrl.algorithms.awm import weighted_logprob

    e, t = torch.tensor([0.25, 4.0]), torch.tensor([0.5, 0.2])
    got = weighted_logprob(e, t, "huber")
    torch.testing.assert_close(got, torch.tensor([-0.5 * (0.5 - 1e-5), -0.2 * (2.0 - 1e-5)], dtype=torch.float64),
                               rtol=1e-6, atol=1e-9)
