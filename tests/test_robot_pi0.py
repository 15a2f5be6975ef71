"""The pi0 backbone: a tiny random transformers.PI0ForConditionalGeneration saved to disk, loaded through
load_policy / from_pretrained, driven with rendered camera frames (dummy images); log-prob consistency, a LoRA
training run on the loop, and export / reload of the trained tensors."""

import os

import pytest
import torch
from robot_helpers import tiny_robot_config

from genrl.policies import load_policy


def _tiny_pi0(directory: str) -> str:
    from transformers import PI0Config, PI0ForConditionalGeneration

    torch.manual_seed(0)
    cfg = PI0Config(
        vlm_config={"text_config": {"model_type": "gemma", "hidden_size": 32, "num_hidden_layers": 1,
                                    "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
                                    "head_dim": 16, "vocab_size": 64},
                    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                                      "patch_size": 8, "image_size": 32, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "vision_use_head": False},
                    "projection_dim": 32, "image_token_id": 63},
        dit_config={"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64, "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 16},
        chunk_size=4, max_state_dim=8, max_action_dim=4)
    PI0ForConditionalGeneration(cfg).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pi0_policy_dir(tmp_path_factory):
    from genrl.policies.robot import RobotFlowPolicy, RobotPolicyConfig

    root = tmp_path_factory.mktemp("pi0")
    pi0 = _tiny_pi0(str(root / "pi0"))
    cfg = RobotPolicyConfig(env="robot2d", obs_dim=6, action_dim=2, horizon=4, action_chunk=2, steps=3,
                            backbone="pi0", pi0_path=pi0, image_size=32, instruction_ids=[5, 6, 7],
                            value_hidden=[16], noise_hidden=[16, 16])
    RobotFlowPolicy(cfg).save_pretrained(str(root / "policy"))
    return str(root / "policy")


@pytest.mark.parametrize("mode", ["flow_noise", "flow_sde"])
def test_pi0_rollout_log_prob_matches_recomputed(pi0_policy_dir, mode):
    from genrl.worlds.envs import make_env
    from genrl.worlds.episodes import chain_log_prob, run_episodes

    pol = load_policy(pi0_policy_dir).eval()
    assert pol.needs_images and pol.model_action_dim == 4 and pol.per_token
    ep = run_episodes(pol, make_env("robot2d", 3, max_steps=4), [0, 1, 2], mode, torch.Generator().manual_seed(0))
    m = ep["mask"]
    assert ep["images"].shape[2:] == (64, 64, 3)
    with torch.no_grad():
        cond = pol.encode(ep["obs"][m], ep["images"][m])
        res = chain_log_prob(pol, cond, ep["chain"][m], ep["kstar"][m], mode)
    torch.testing.assert_close(res["logp"], ep["logp"][m], atol=1e-4, rtol=1e-5)
    std = pol.noise_std(torch.randn(5, 4, 32) * 50)
    assert std.shape == (5, 4, 4) and bool((std >= 0.08 - 1e-6).all() and (std <= 0.16 + 1e-6).all())


def test_pi0_needs_images(pi0_policy_dir):
    with pytest.raises(ValueError, match="needs camera images"):
        load_policy(pi0_policy_dir).encode(torch.zeros(2, 6))


@pytest.mark.slow
def test_pi0_lora_train_and_export(pi0_policy_dir, tmp_path):
    from genrl.loop import train

    run = tmp_path / "run"
    cfg = tiny_robot_config(pi0_policy_dir, str(run), "flow_sde", "ppo",
                            model={"lora_rank": 4},
                            algorithm={"name": "pi_rl", "noise_method": "flow_sde", "loss": "ppo", "env": "robot2d",
                                       "env_options": {"max_steps": 4}},
                            sample={"group_size": 2, "groups_per_step": 2, "batch_size": 4},
                            train={"steps": 1, "batch_size": 2, "inner_epochs": 1, "updates_per_step": 1},
                            eval={"every": 0})
    train(cfg, progress=False)
    out = run / "checkpoints" / "step_000001" / "lora"
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert any("lora_" in k for k in saved) and any(k.startswith("value_head.") for k in saved)
    assert not any(k.startswith("expert.model.model.vlm.") for k in saved)  # the frozen VLM stays at pi0_path
    reloaded = load_policy(str(out), lora_rank=4)
    trained = dict(reloaded.named_parameters())
    assert all(torch.equal(trained[k], v) for k, v in saved.items())
    assert os.path.isfile(out / "robot_policy.json")


@pytest.mark.slow
def test_pretrain_robot_cli_with_pi0_backbone(tmp_path):
    from genrl.cli import main as cli

    pi0 = _tiny_pi0(str(tmp_path / "pi0"))
    out = tmp_path / "bc"
    assert cli(["pretrain", "robot", "--env", "robot2d", "--backbone", "pi0", "--pi0-path", pi0, "--horizon", "4",
                "--action-chunk", "2", "--denoise-steps", "2", "--image-size", "32", "--demos", "2", "--steps", "2",
                "--batch-size", "8", "--eval-episodes", "2", "--max-steps", "24", "--out", str(out)]) == 0
    pol = load_policy(str(out))
    assert pol.config.backbone == "pi0" and os.path.isfile(out / "README.md")
