"""metaworld (the `robot` extra): MT1 envs through make_env, deterministic resets, scripted expert, a pi_rl step."""

import pytest
import torch
from robot_helpers import tiny_robot_config, tiny_robot_policy

pytest.importorskip("metaworld", reason="metaworld is in the robot extra: pip install 'genrl[robot]'")

from genrl.worlds.envs import make_env  # noqa: E402


def test_reach_env_resets_deterministically_and_expert_succeeds():
    env = make_env("metaworld/reach-v3", 2, max_steps=150)
    o1, _ = env.reset(seed=[3, 4])
    o2, _ = env.reset(seed=[3, 4])
    assert o1.shape == (2, 39) and torch.equal(o1, o2) and not torch.equal(o1[0], o1[1])
    expert = env.expert()
    obs, success = o1, torch.zeros(2, dtype=torch.bool)
    for _ in range(150):
        obs, r, te, tr, info = env.step(expert.act(obs))
        success |= info["success"]
        assert bool((r == info["success"].float()).all())
        if env.done.all():
            break
    assert bool(success.all()) and bool(env.done.all())
    frames = env.render()
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == torch.uint8


def test_unknown_metaworld_task():
    with pytest.raises(ValueError, match="unknown metaworld task 'reech-v3'.*reach-v3"):
        make_env("metaworld/reech-v3", 1)


def test_pi_rl_step_on_metaworld(tmp_path):
    from genrl.loop import train

    pol = tiny_robot_policy(str(tmp_path / "p"), env="metaworld/reach-v3", obs_dim=39, action_dim=4)
    cfg = tiny_robot_config(pol, str(tmp_path / "run"), "flow_sde", "ppo",
                            algorithm={"env": "metaworld/reach-v3", "env_options": {"max_steps": 8}},
                            sample={"group_size": 2, "groups_per_step": 1, "batch_size": 2},
                            train={"steps": 1, "batch_size": 2}, eval={"every": 0})
    assert train(cfg, progress=False).steps_done == 1
