"""pi_RL step math against hand-computed cases, Flow-Noise std bounds, log-prob consistency, GAE by hand."""

import math

import pytest
import torch
from robot_helpers import tiny_robot_policy

from genrl.algorithms.pi_rl import gae
from samplers.action_steps import action_grid, bounded_std, gaussian_log_density, step_mean_std


def test_flow_sde_mean_std_hand_computed():
    x, v = torch.tensor([1.0]), torch.tensor([0.5])
    # t = 0.5, delta = 0.25, a = 0.5: sigma = 0.5 sqrt(0.5 / 0.5) = 0.5, std = 0.5 * sqrt(0.25) = 0.25;
    # mean = x - delta v - sigma^2 delta / (2 t) * (x + (1 - t) v) = 1 - 0.125 - 0.0625 * 1.25 = 0.796875
    mean, std = step_mean_std(x, v, 0.5, 0.25, "sde", 0.5)
    assert mean.item() == pytest.approx(0.796875, abs=1e-7) and std.item() == pytest.approx(0.25, abs=1e-7)
    # t = 1 uses 1 - t_1 = delta in the denominator: sigma = 0.5 sqrt(1 / 0.25) = 1, std = 0.5;
    # mean = 1 - 0.125 - (1 * 0.25 / 2) * 1 = 0.75
    mean, std = step_mean_std(x, v, 1.0, 0.25, "sde", 0.5)
    assert mean.item() == pytest.approx(0.75, abs=1e-7) and std.item() == pytest.approx(0.5, abs=1e-7)
    mean, std = step_mean_std(x, v, 0.5, 0.25, "ode")
    assert mean.item() == pytest.approx(1 - 0.25 * 0.5) and std.item() == 0.0
    # CPS: mean = (1 - t') x0 + t' cos(pi a / 2) x1, std = t' sin(pi a / 2), t' = 0.25
    mean, std = step_mean_std(x, v, 0.5, 0.25, "cps", 0.5)
    assert mean.item() == pytest.approx(0.75 * 0.75 + 0.25 * math.cos(math.pi / 4) * 1.25, abs=1e-6)
    assert std.item() == pytest.approx(0.25 * math.sin(math.pi / 4), abs=1e-7)


def test_flow_sde_preserves_gaussian_marginal():
    """Exact velocity of data N(2, 0.3^2); 50 SDE steps (a = 0.5) land on the data marginal (RLinf check)."""
    mu, s = 2.0, 0.3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=gen)
    grid = action_grid(50)
    for k in range(50):
        t, d = float(grid[k]), float(grid[k] - grid[k + 1])
        m, var = (1 - t) * mu, t**2 + (1 - t) ** 2 * s**2
        v = (t - (1 - t) * s**2) * (x - m) / var - mu
        mean, std = step_mean_std(x, v, t, d, "sde", 0.5)
        x = mean + std * torch.randn(x.shape, generator=gen)
    assert x.mean().item() == pytest.approx(mu, abs=0.02)
    assert x.std().item() == pytest.approx(s, abs=0.02)


def test_flow_noise_std_is_bounded():
    z = torch.tensor([-1e4, -3.0, 0.0, 3.0, 1e4])
    std = bounded_std(z, 0.08, 0.16)
    assert std[0].item() == pytest.approx(0.08, rel=1e-5) and std[-1].item() == pytest.approx(0.16, rel=1e-5)
    assert std[2].item() == pytest.approx(math.sqrt(0.08 * 0.16), rel=1e-5)  # geometric mean at z = 0
    assert bool((std[1:] >= std[:-1]).all())


def test_policy_noise_std_within_bounds_for_any_features(tmp_path):
    from genrl.policies.robot import RobotFlowPolicy

    pol = RobotFlowPolicy.from_pretrained(tiny_robot_policy(str(tmp_path / "p")))
    feat = torch.randn(64, 1, 32) * 100
    std = pol.noise_std(feat)
    assert std.shape == (64, 4, 2) and bool((std >= 0.08 - 1e-6).all()) and bool((std <= 0.16 + 1e-6).all())


def test_gaussian_log_density_zero_std_elements_count_zero():
    lp = gaussian_log_density(torch.tensor([0.3, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.0]))
    assert lp[0].item() == pytest.approx(-math.log(0.5) - 0.5 * math.log(2 * math.pi) - 0.5 * 0.36, abs=1e-6)
    assert lp[1].item() == 0.0


@pytest.mark.parametrize("mode", ["flow_noise", "flow_sde"])
def test_stored_log_prob_equals_recomputed(tmp_path, mode):
    """The chain stored at rollout, re-scored with the same weights, gives the same log-prob and value."""
    from genrl.policies.robot import RobotFlowPolicy
    from genrl.worlds.envs import make_env
    from genrl.worlds.episodes import chain_log_prob, run_episodes

    pol = RobotFlowPolicy.from_pretrained(tiny_robot_policy(str(tmp_path / "p"))).eval()
    ep = run_episodes(pol, make_env("robot2d", 6, max_steps=10), list(range(6)), mode,
                      torch.Generator().manual_seed(1))
    m = ep["mask"]
    assert m.any()
    if mode == "flow_sde":
        assert ep["chain"].shape[2] == 2 and int(ep["kstar"][m].max()) <= pol.config.steps - 2  # ignore_last
        assert all(len(torch.unique(ep["kstar"][:, j][m[:, j]])) <= 1 for j in range(m.shape[1]))  # shared k*
    else:
        assert ep["chain"].shape[2] == pol.config.steps + 1
    with torch.no_grad():
        res = chain_log_prob(pol, pol.encode(ep["obs"][m]), ep["chain"][m], ep["kstar"][m], mode)
    torch.testing.assert_close(res["logp"], ep["logp"][m], atol=1e-4, rtol=1e-5)
    if mode == "flow_noise":
        torch.testing.assert_close(res["value"], ep["value"][m], atol=1e-5, rtol=1e-5)


def test_flow_noise_joint_log_prob_is_mean_of_k_plus_1_terms(tmp_path):
    """Recompute the joint log-prob by hand: prior N(x_1; 0, I) + K transitions, averaged, then summed over the
    executed actions' env dims only."""
    from genrl.policies.robot import RobotFlowPolicy
    from genrl.worlds.episodes import act, chain_log_prob

    pol = RobotFlowPolicy.from_pretrained(tiny_robot_policy(str(tmp_path / "p"))).eval()
    cond = pol.encode(torch.randn(5, 6))
    gen = torch.Generator().manual_seed(0)
    out = act(pol, cond, torch.randn(5, 4, 2, generator=gen), "flow_noise", -1, gen)
    chain = out["chain"]
    grid = action_grid(3)
    terms = [gaussian_log_density(chain[:, 0], torch.zeros(()), torch.ones(()))]
    with torch.no_grad():
        for k in range(3):
            t, d = float(grid[k]), float(grid[k] - grid[k + 1])
            v, feat = pol.expert_forward(chain[:, k], t, cond)
            mean = chain[:, k] - d * v
            terms.append(gaussian_log_density(chain[:, k + 1], mean, pol.noise_std(feat)))
        want = torch.stack(terms, 1).mean(1)[:, :2, :2].sum((-2, -1))  # executed chunk 2 of H = 4
        got = chain_log_prob(pol, cond, chain, torch.zeros(5, dtype=torch.long), "flow_noise")["logp"]
    torch.testing.assert_close(out["logp"], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_gae_hand_made_episodes():
    # row 0: 3 steps, success at the last (terminal); row 1: 2 valid steps then padding, truncated, bootstrap 0.4
    reward = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    value = torch.tensor([[0.5, 0.6, 0.7], [0.2, 0.3, 0.0]])
    terminal = torch.tensor([[False, False, True], [False, False, False]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv, ret = gae(reward, value, terminal, mask, torch.tensor([0.0, 0.4]), gamma=0.9, lam=0.8)
    # row 0: d2 = 0.3; d1 = 0.9 * 0.7 - 0.6 = 0.03, A1 = 0.03 + 0.72 * 0.3; d0 = 0.9 * 0.6 - 0.5, A0 = d0 + 0.72 A1
    a1 = 0.03 + 0.72 * 0.3
    want0 = [0.04 + 0.72 * a1, a1, 0.3]
    # row 1: d1 = 0.9 * 0.4 - 0.3 = 0.06; d0 = 0.9 * 0.3 - 0.2 = 0.07, A0 = 0.07 + 0.72 * 0.06; padding 0
    want1 = [0.07 + 0.72 * 0.06, 0.06, 0.0]
    torch.testing.assert_close(adv, torch.tensor([want0, want1]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ret, (torch.tensor([want0, want1]) + value) * mask.float(), atol=1e-6, rtol=1e-6)
