"""pi_rl on the one loop with the built-in robot2d task: 2-step runs of Flow-Noise / Flow-SDE x PPO / GRPO, ratio 1
on the first update, exact resume, and bad input / faulty environments."""

import json
import os

import pytest
import torch
from robot_helpers import tiny_robot_config, tiny_robot_policy, tiny_robot_raw

from genrl.algorithms import StepContext, get_algorithm
from genrl.config import load_config
from genrl.loop import train
from genrl.worlds.envs import register_env


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return tiny_robot_policy(str(tmp_path_factory.mktemp("robot") / "policy"))


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("noise_method", ["flow_noise", "flow_sde"])
@pytest.mark.parametrize("loss", ["ppo", "grpo"])
def test_two_step_run(policy_dir, tmp_path, noise_method, loss):
    run = tmp_path / "run"
    # PPO trains on its own GAE advantages (the loop's group ones are 0): never idle, even when no episode succeeds
    extra = {"run": {"dir": str(run), "max_idle_steps": 1}} if loss == "ppo" else {}
    res = train(tiny_robot_config(policy_dir, str(run), noise_method, loss, **extra), progress=False)
    assert res.steps_done == 2
    rows = _rows(run)
    steps = [r for r in rows if "train/reward_success" in r]
    if loss == "ppo":
        assert all(r["train/adv_abs_mean"] > 0 for r in steps)
    assert len(steps) == 2 and all(0 <= r["train/reward_success"] <= 1 for r in steps)
    assert all(r["train/reward_length"] > 0 and r["train/reward_fault"] == 0 for r in steps)
    assert ("train/loss_value" in steps[0]) == (loss == "ppo")
    assert ("train/entropy" in steps[0]) == (noise_method == "flow_noise")
    evals = [r for r in rows if "eval/reward_mean" in r]
    assert [e["step"] for e in evals] == [0, 2]
    assert os.path.isfile(run / evals[-1]["eval/grid"]) and evals[-1]["eval/grid"].endswith(".gif")
    # the exported policy of the last checkpoint is a loadable policy directory
    from genrl.policies import load_policy

    pol = load_policy(str(run / "checkpoints" / "step_000002" / "lora"))
    assert pol.config.obs_dim == 6


@pytest.mark.parametrize("noise_method", ["flow_noise", "flow_sde"])
def test_first_update_ratio_is_one(policy_dir, tmp_path, noise_method):
    """Rollout log-probs re-scored by losses() before any update: ratio 1, nothing clipped."""
    from genrl.policies import load_policy

    cfg = tiny_robot_config(policy_dir, str(tmp_path / "r"), noise_method, "ppo")
    algo = get_algorithm("pi_rl")(cfg.algorithm, cfg.sample, cfg.advantage)
    pol = load_policy(policy_dir).eval()
    ctx = StepContext(step=0, update=0, generator=torch.Generator().manual_seed(0), rng=None,
                      device=torch.device("cpu"))
    b = algo.rollout(pol, [f"init {i}" for i in range(8)], torch.arange(8) // 4, ctx)
    b.advantages = algo.advantages(b.rewards, b.group)
    algo.prepare_update(b, lambda t: t)
    (loss, m), = list(algo.losses(pol, b, ctx))
    assert torch.isfinite(loss)
    assert m["ratio_mean"] == pytest.approx(1.0, abs=1e-5) and m["clip_frac"] == 0.0
    assert m["approx_kl"] < 1e-9


@pytest.mark.slow
def test_resume_is_exact(policy_dir, tmp_path):
    """4 steps straight == 2 steps + `genrl train --resume` to 4: policy, noise net, critic and optimizer."""
    from safetensors.torch import load_file

    from genrl.cli import main as cli

    straight, split = tmp_path / "straight", tmp_path / "split"
    kw = {"eval": {"every": 0}}
    train(tiny_robot_config(policy_dir, str(straight), "flow_noise", "ppo", train={"steps": 4}, **kw), progress=False)
    train(tiny_robot_config(policy_dir, str(split), "flow_noise", "ppo", train={"steps": 2}, **kw), progress=False)
    assert cli(["train", "--resume", str(split), "train.steps=4", "--no-progress"]) == 0
    a = load_file(str(straight / "checkpoints" / "step_000004" / "trainable.safetensors"))
    b = load_file(str(split / "checkpoints" / "step_000004" / "trainable.safetensors"))
    assert any(k.startswith("noise_head.") for k in a) and any(k.startswith("value_head.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = [r for r in _rows(straight) if "train/reward_success" in r]
    rb = [r for r in _rows(split) if "train/reward_success" in r]
    assert [r["train/loss_policy"] for r in ra] == [r["train/loss_policy"] for r in rb]


def test_unknown_env_id_is_one_line_error():
    from genrl.worlds.envs import make_env

    with pytest.raises(ValueError, match="unknown environment id 'robot2'.*did you mean 'robot2d'"):
        make_env("robot2", 4)


def test_unknown_env_id_at_trainer(policy_dir, tmp_path):
    raw = tiny_robot_raw(policy_dir, str(tmp_path / "r"))
    raw["algorithm"]["env"] = "robot2"
    with pytest.raises(ValueError, match="unknown environment id"):
        train(load_config(raw=raw), progress=False)
    assert not os.path.exists(tmp_path / "r")


def test_policy_env_dim_mismatch(tmp_path):
    pol = tiny_robot_policy(str(tmp_path / "p3"), obs_dim=5)
    with pytest.raises(ValueError, match=r"obs/action dims \(6, 2\) but the policy expects \(5, 2\)"):
        train(tiny_robot_config(pol, str(tmp_path / "r")), progress=False)
    assert not os.path.exists(tmp_path / "r" / "config.yaml")


def test_observation_shape_mismatch_in_encode(policy_dir):
    from genrl.policies import load_policy

    with pytest.raises(ValueError, match="does not match the policy"):
        load_policy(policy_dir).encode(torch.zeros(3, 7))


class _FaultyRobot2D:
    """robot2d where env 1 returns NaN observations at its 3rd step, or (mode="raise") the whole env raises."""

    def __init__(self, num_envs, mode="nan", **kw):
        from genrl.worlds.robot2d import Robot2DEnv

        self.inner, self.mode, self.calls = Robot2DEnv(num_envs, **kw), mode, 0
        self.num_envs, self.obs_dim, self.action_dim = num_envs, 6, 2
        self.max_steps = self.inner.max_steps

    def reset(self, seed=None):
        self.calls = 0
        return self.inner.reset(seed=seed)

    def step(self, a):
        self.calls += 1
        obs, r, te, tr, info = self.inner.step(a)
        if self.calls == 3:
            if self.mode == "raise":
                raise RuntimeError("simulator exploded")
            obs = obs.clone()
            obs[1] = float("nan")
        return obs, r, te, tr, info

    def render(self):
        return self.inner.render()


def test_nan_episode_is_dropped_and_counted(policy_dir, tmp_path):
    register_env("faulty-nan", lambda n, **kw: _FaultyRobot2D(n, "nan", **kw))
    raw = tiny_robot_raw(policy_dir, str(tmp_path / "r"), "flow_sde", "grpo")
    raw["algorithm"]["env"] = "faulty-nan"
    raw["eval"]["every"] = 0
    train(load_config(raw=raw), progress=False)
    rows = [r for r in _rows(tmp_path / "r") if "train/reward_fault" in r]
    # one faulty episode per rollout batch of 8 -> its group (of 4) is dropped; training continues
    assert all(r["train/reward_fault"] == pytest.approx(1 / 8) for r in rows)
    assert all(r["train/nonfinite_groups"] == 1 for r in rows) and len(rows) == 2


def test_env_raising_drops_the_batch_and_continues(policy_dir, tmp_path):
    from genrl.policies import load_policy
    from genrl.worlds.episodes import run_episodes

    ep = run_episodes(load_policy(policy_dir), _FaultyRobot2D(4, "raise", max_steps=12), [0, 1, 2, 3], "flow_sde",
                      torch.Generator().manual_seed(0))
    assert bool(ep["fault"].all()) and not ep["mask"].any()  # every live episode dropped, nothing left to train on


def test_metaworld_missing_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "metaworld" or name.startswith("metaworld."):
            raise ImportError("No module named 'metaworld'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    from genrl.worlds.envs import make_env

    with pytest.raises(ImportError, match=r"pip install 'genrl\[robot\]'"):
        make_env("metaworld/reach-v3", 1)
