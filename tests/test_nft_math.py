"""DiffusionNFT math against hand-computed tiny cases (flow_methods.md §2.3-§2.5)."""

import os

import pytest
import torch

from genrl.algorithms.nft import (
    grid_timestep_choices,
    implicit_velocities,
    nft_loss,
    old_policy_decay,
    optimality_probability,
    soft_update_,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("mode,want", [
    ("all", [0.0, 0.0, 0.5, 1.0, 1.0]),
    ("positive_only", [0.5, 0.5, 0.5, 1.0, 1.0]),
    ("negative_only", [0.0, 0.0, 0.5, 0.5, 0.5]),
    ("one_only", [0.5, 0.5, 0.5, 0.6, 0.6]),  # A -> 1[A > 0], then 0.5 + A / 10
    ("binary", [0.4, 0.4, 0.5, 0.6, 0.6]),  # A -> sign(A)
])
def test_advantage_modes(mode, want):
    a = torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0])
    torch.testing.assert_close(optimality_probability(a, 5.0, mode), torch.tensor(want))


def test_unknown_advantage_mode():
    from genrl.algorithms.nft import NFTConfig

    with pytest.raises(ValueError, match="adv_mode"):
        NFTConfig(adv_mode="positive")


def test_optimality_probability_extremes_and_middle():
    a = torch.tensor([-100.0, -5.0, -2.5, 0.0, 2.5, 5.0, 100.0])
    r = optimality_probability(a, adv_clip_max=5.0)
    assert r.tolist() == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    with pytest.raises(ValueError, match="adv_clip_max"):
        optimality_probability(a, adv_clip_max=0)


def test_implicit_velocities():
    vt, vo = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])
    vp, vn = implicit_velocities(vt, vo, beta=0.1)
    # v+ = 0.1*vt + 0.9*vo ; v- = 1.1*vo - 0.1*vt
    assert vp.tolist() == pytest.approx([2.8, -0.7])
    assert vn.tolist() == pytest.approx([3.2, -1.3])
    assert torch.allclose(vp + vn, 2 * vo)
    # beta = 1: v+ = v_theta, v- = 2 v_old - v_theta
    vp, vn = implicit_velocities(vt, vo, beta=1.0)
    assert vp.tolist() == [1.0, 2.0] and vn.tolist() == [5.0, -4.0]


def test_nft_loss_hand_computed():
    # x0=[1,0], eps=[0,1], t=0.5 -> x_t=[0.5,0.5]; v_theta=[0,0], v_old=[1,1], beta=1 -> v+=[0,0], v-=[2,2]
    # x0+ = [0.5,0.5], diff [-0.5,0.5], w+=0.5, l+=0.25/0.5=0.5
    # x0- = [-0.5,-0.5], diff [-1.5,-0.5], w-=1.0, l-=(2.25+0.25)/2/1=1.25
    # A=2.5 -> r=0.75; L = 5*(0.75*0.5 + 0.25*1.25)/1 = 3.4375
    x0 = torch.tensor([[1.0, 0.0]])
    x_t = torch.tensor([[0.5, 0.5]])
    t = torch.tensor([0.5])
    v_theta = torch.zeros(1, 2, requires_grad=True)
    v_old = torch.ones(1, 2)
    r = optimality_probability(torch.tensor([2.5]))
    loss, m = nft_loss(x0, x_t, t, v_theta, v_old, r, beta=1.0, adv_clip_max=5.0)
    assert loss.item() == pytest.approx(3.4375)
    assert m["loss_pos"] == pytest.approx(0.5) and m["loss_neg"] == pytest.approx(1.25)
    # with beta=0.5: v+=[0.5,0.5] -> x0+=[0.25,0.25], diff[-.75,.25], w=.5, l+=(.5625+.0625)/2/.5=.625
    # v-=[1.5,1.5] -> x0-=[-.25,-.25], diff[-1.25,-.25], w=.75, l-=(1.5625+.0625)/2/.75=1.0833..
    # L = 5*(0.75*.625 + .25*1.08333)/0.5 = 7.395833..
    loss, _ = nft_loss(x0, x_t, t, v_theta, v_old, r, beta=0.5)
    assert loss.item() == pytest.approx(5 * (0.75 * 0.625 + 0.25 * (1.625 / 2 / 0.75)) / 0.5)
    # KL to the base: mean (v_theta - v_ref)^2 = mean([1,4]) = 2.5, times kl_beta
    v_ref = torch.tensor([[1.0, -2.0]])
    loss_kl, m = nft_loss(x0, x_t, t, v_theta, v_old, r, beta=1.0, v_ref=v_ref, kl_beta=0.1)
    assert m["kl_loss"] == pytest.approx(2.5)
    assert loss_kl.item() == pytest.approx(3.4375 + 0.25)


def test_nft_on_policy_gradient_is_advantage_weighted_flow_matching():
    # at v_theta == v_old, grad wrt v_theta is proportional to (2r - 1)(v_old - v*): A>0 pulls toward v*=eps-x0
    torch.manual_seed(0)
    x0, eps = torch.randn(1, 8), torch.randn(1, 8)
    t = torch.tensor([0.7])
    x_t = (1 - t) * x0 + t * eps
    v_old = torch.randn(1, 8)
    for adv, sign in ((3.0, 1.0), (-3.0, -1.0)):
        v_theta = v_old.clone().requires_grad_(True)
        loss, _ = nft_loss(x0, x_t, t, v_theta, v_old, optimality_probability(torch.tensor([adv])), beta=1.0)
        loss.backward()
        direction = v_old - (eps - x0)
        cos = torch.nn.functional.cosine_similarity(v_theta.grad.flatten(), direction.flatten(), dim=0)
        assert cos.item() == pytest.approx(sign, abs=1e-5)
    # r = 0.5 (A = 0): no gradient on-policy
    v_theta = v_old.clone().requires_grad_(True)
    nft_loss(x0, x_t, t, v_theta, v_old, torch.tensor([0.5]), beta=1.0)[0].backward()
    assert v_theta.grad.abs().max().item() < 1e-6


def test_old_policy_decay_schedules():
    assert [old_policy_decay(s, 0) for s in (0, 10, 1000)] == [0.0, 0.0, 0.0]
    assert [old_policy_decay(s, 1) for s in (0, 100, 499, 500, 5000)] == pytest.approx([0.0, 0.1, 0.499, 0.5, 0.5])
    assert [old_policy_decay(s, 2) for s in (0, 74, 75, 175, 1000)] == pytest.approx([0.0, 0.0, 0.0, 0.75, 0.999])
    with pytest.raises(ValueError, match="decay_type"):
        old_policy_decay(3, 7)


def test_soft_update():
    old = {"w": torch.tensor([0.0, 2.0])}
    soft_update_(old, {"w": torch.tensor([4.0, 4.0])}, decay=0.25)  # 0.25*old + 0.75*new
    assert old["w"].tolist() == [3.0, 3.5]


def test_grid_timestep_choices_is_a_per_sample_permutation():
    grid = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.125, 0.0])
    g = torch.Generator().manual_seed(0)
    ts = grid_timestep_choices(grid, batch=3, timestep_fraction=0.99, generator=g)
    assert ts.shape == (3, 4)  # 5 nonzero grid points, int(5*0.99) = 4
    for row in ts:
        assert len(set(row.tolist())) == 4 and set(row.tolist()) <= {1.0, 0.75, 0.5, 0.25, 0.125}


@pytest.mark.parametrize("task", ["geneval", "ocr", "pickscore"])
def test_shipped_sd35_configs_have_reference_defaults(task):
    from genrl.config import load_config

    cfg = load_config(f"{ROOT}/configs/sd35/{task}_nft.yaml")
    a, s = cfg.algorithm, cfg.sample
    assert a.name == "nft" and a.kl_beta == 1e-4 and a.adv_clip_max == 5.0 and a.timestep_fraction == 0.99
    assert (a.beta, a.decay_type, cfg.train.updates_per_step) == ((0.1, 2, 2) if task == "ocr" else (1.0, 1, 1))
    assert (s.method, s.steps, s.shift, s.cfg_scale, s.group_size, s.groups_per_step) == ("dpm2", 10, 3.0, 1.0, 24, 48)
    assert cfg.model.lora_rank == 32 and cfg.model.lora_alpha == 64 and cfg.train.lr == 3e-4
