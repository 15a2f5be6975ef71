"""RL on 3D with the one loop: the voxel adapter's round trip through WanPipeline.from_pretrained, the shipped
configs/3d (single-stage and hierarchical) running 2 steps on a tiny random voxel model, hierarchical stage
advantages, exact resume, and PLY meshes from `genrl sample`."""

import json
import os

import pytest
import torch

from genrl.config import ConfigError, load_config
from genrl.loop import Trainer

TINY = ["sample.group_size=2", "sample.groups_per_step=2", "sample.batch_size=4", "sample.steps=4",
        "train.steps=2", "train.batch_size=2", "eval.every=2", "eval.num_prompts=4", "eval.steps=2",
        "eval.batch_size=4", "eval.grid_images=2", "checkpoint.every=2", "model.lora_rank=2", "run.tensorboard=false",
        "advantage.filter_zero_std=false", "run.max_idle_steps=0"]
GRPO = ["sample.sde_window_range=[0,4]", "sample.sde_window_size=2"]


@pytest.fixture(scope="module")
def tiny_3d(tmp_path_factory):
    from genrl.worlds.shapes3d.model import Shapes3DModelConfig, build_model, save_pipeline

    cfg = Shapes3DModelConfig(num_layers=1, ffn_dim=32, num_attention_heads=2, attention_head_dim=8, text_dim=16,
                              text_layers=1)
    path = str(tmp_path_factory.mktemp("vox") / "base")
    save_pipeline(path, *build_model(cfg), cfg)
    return path


def test_voxel_adapter_round_trip(tiny_3d, tmp_path):
    from diffusers import WanPipeline

    from genrl.policies import load_policy
    from genrl.policies.voxel3d import VoxelPolicy

    pol = load_policy(tiny_3d, lora_rank=2, device="cpu")
    assert isinstance(pol, VoxelPolicy) and pol.world == "shapes3d" and pol.sample_format == "voxels"
    assert pol.noise_shape(3) == (3, 4, 16, 16, 16)
    x = torch.randn(pol.noise_shape(2))
    v = pol.velocity(x, torch.tensor(0.7), pol.encode(["a red cube", "two cones"]))
    assert v.shape == x.shape and torch.isfinite(v).all()
    grids = pol.decode(x)
    assert grids.shape == x.shape and 0 <= grids.min() and grids.max() <= 1
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.1)
    pol.save_trainable(str(tmp_path / "lora"))
    pipe = WanPipeline.from_pretrained(tiny_3d, vae=None, transformer_2=None)
    pipe.load_lora_weights(str(tmp_path / "lora"))  # diffusers' own loader takes the LoRA unchanged
    again = load_policy(tiny_3d, lora_rank=2, device="cpu")
    again.load_trainable(str(tmp_path / "lora"))
    c = pol.encode(["a red cube"])
    torch.testing.assert_close(again.velocity(x[:1], torch.tensor(0.3), c), pol.velocity(x[:1], torch.tensor(0.3), c))
    with pytest.raises(ValueError, match="grid side 10 is not a multiple of the model's patch size 4; use a grid of 8"):
        pol.noise_shape(1, resolution=10)
    with pytest.raises(ValueError, match="cubic grid"):
        load_policy(tiny_3d, height=8, device="cpu")


@pytest.mark.parametrize("config", ["nft", "grpo_hierarchical", "awm_hierarchical"])
def test_3d_configs_run_two_steps(config, tiny_3d, tmp_path):
    import yaml

    extra = GRPO if config.startswith("grpo") else []
    raw = yaml.safe_load(open(f"configs/3d/{config.replace('awm', 'nft')}.yaml"))
    if config == "awm_hierarchical":  # the stages work with AWM too (not shipped: NFT and GRPO are)
        raw["algorithm"] = {"name": "awm", "n_train": 2}
    cfg = load_config(raw=raw, overrides=[f"model.path={tiny_3d}", f"run.dir={tmp_path / 'run'}", *TINY, *extra])
    trainer = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in trainer.policy.trainable_state().items()}
    assert trainer.run().steps_done == 2
    after = trainer.policy.trainable_state()
    assert any((after[k] - before[k]).abs().max() > 0 for k in before)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train = [r for r in rows if "train/reward_mean" in r]
    assert train and "train/reward_shapes3d/count" in train[0]
    if "hierarchical" in config:
        assert {"train/reward_stage/coarse", "train/reward_stage/fine", "eval/stage/coarse"} <= {k for r in rows
                                                                                                for k in r}
    grids = [r["eval/grid"] for r in rows if "eval/grid" in r]
    assert grids and all(g.endswith(".gif") for g in grids)
    assert os.path.isfile(tmp_path / "run" / grids[-1])


def test_stage_advantages_pick_the_stage_of_each_timestep():
    from genrl.advantages import group_advantages, zero_std_mask
    from genrl.hierarchy import stage_advantages

    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 1.0], [0.5, 0.0]])
    g = torch.tensor([0, 0, 1, 1])
    adv = group_advantages(r, g, global_std=False, clip=None, eps=1e-4)
    for k in range(2):
        torch.testing.assert_close(adv[:, k], group_advantages(r[:, k], g, global_std=False, clip=None, eps=1e-4))
    assert zero_std_mask(r, g).tolist() == [False, False, False, False]
    assert zero_std_mask(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0])).tolist() == [True, True]
    t = torch.tensor([0.9, 0.5, 0.49, 0.0])
    assert stage_advantages(adv, t, [0.5, 0.0]).tolist() == [adv[0, 0], adv[1, 0], adv[2, 1], adv[3, 1]]
    assert stage_advantages(adv, 0.7, [0.5, 0.0]).tolist() == adv[:, 0].tolist()  # one t for the batch (GRPO)
    assert stage_advantages(adv[:, 0], t, [0.5, 0.0]) is not None  # one stage: unchanged


def test_bad_stages_and_bad_rewards_are_one_line(tiny_3d, tmp_path):
    base = [f"model.path={tiny_3d}", f"run.dir={tmp_path / 'run'}", *TINY]
    with pytest.raises(ConfigError, match="t_min must strictly decrease"):
        load_config("configs/3d/nft_hierarchical.yaml", base + ["advantage.stages=[{name: a, t_min: 0.3, rewards: "
                                                                "{shapes3d: 1.0}}, {name: b, t_min: 0.5, rewards: "
                                                                "{shapes3d: 1.0}}]"])
    import yaml

    raw = yaml.safe_load(open("configs/3d/nft_hierarchical.yaml"))
    raw["algorithm"] = {"name": "diffu_grpo"}
    with pytest.raises(ConfigError, match="works with algorithm.name in grpo, nft, awm"):
        load_config(raw=raw, overrides=base)
    with pytest.raises(ValueError, match="does not score 3D voxel grids.*multiview3d"):
        Trainer(load_config("configs/3d/nft.yaml", base + ["rewards={jpeg_compressibility: 1.0}"]), progress=False)
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


@pytest.mark.slow
def test_3d_hierarchical_resume_is_exact(tiny_3d, tmp_path):
    from safetensors.torch import load_file

    from genrl.cli import main

    over = [f"model.path={tiny_3d}", *TINY, *GRPO, "train.steps=4", "eval.every=0", "checkpoint.every=2"]
    Trainer(load_config("configs/3d/grpo_hierarchical.yaml", over + [f"run.dir={tmp_path / 'a'}"]),
            progress=False).run()
    Trainer(load_config("configs/3d/grpo_hierarchical.yaml", over + [f"run.dir={tmp_path / 'b'}", "train.steps=2"]),
            progress=False).run()
    assert main(["train", "--resume", str(tmp_path / "b"), "train.steps=4", "--no-progress"]) == 0
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000004" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000004" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_3d_cli_eval_and_sample_write_json_and_ply(tiny_3d, tmp_path):
    from genrl.cli import main
    from genrl.worlds.shapes3d.export import read_ply

    out = tmp_path / "scores.json"
    assert main(["eval", "--model", tiny_3d, "--split", "eval", "--per-category", "2", "--steps", "2",
                 "--out", str(out)]) == 0
    report = json.load(open(out))
    assert set(report["overall"]) >= {"strict", "partial"} and report["overall"]["n"] == 8
    assert set(report["per_category"]) == {"single", "counting", "two_object", "relation"}
    s = tmp_path / "s"
    assert main(["sample", "--model", tiny_3d, "--prompt", "a red cube on top of a blue sphere", "--num", "2",
                 "--steps", "2", "--cfg-scale", "1", "--out", str(s)]) == 0
    plys = sorted(f for f in os.listdir(s) if f.endswith(".ply"))
    assert os.path.isfile(s / "grid.gif") and plys  # a random model still fills some voxels
    assert len(read_ply(str(s / plys[0]))["faces"]) > 0


def test_pretrain_3d_cli_writes_a_loadable_voxel_model(tmp_path):
    from genrl.cli import main
    from genrl.policies import load_policy

    out = tmp_path / "m"
    assert main(["pretrain", "3d", "--out", str(out), "--steps", "3", "--layers", "1", "--heads", "2",
                 "--batch-size", "4", "--threads", "1"]) == 0
    index = json.load(open(out / "model_index.json"))
    assert index["genrl_family"] == "voxel3d" and index["genrl_pretrain"]["steps_done"] == 3
    assert index["genrl_pretrain"]["bf16"] is False  # --precision auto: fp32 for the Wan models (faster on CPU)
    assert len(json.load(open(out / "pretrain_log.json"))) == 0  # log_every 50 > 3 steps
    pol = load_policy(str(out), device="cpu")
    assert pol.transformer.config.num_layers == 1 and pol.noise_shape(1) == (1, 4, 16, 16, 16)


def test_shipped_3d_model_loads_and_samples():
    from genrl.policies import load_policy
    from genrl.shapes.generate import generate

    path = "assets/shapes3d-base"
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    assert "3d" in os.path.basename(path) and size < 20e6
    index = json.load(open(os.path.join(path, "model_index.json")))
    assert index["genrl_family"] == "voxel3d" and index["genrl_pretrain"]["cpu_minutes_done"] <= 60.5
    scores = json.load(open(os.path.join(path, "eval_scores.json")))
    assert set(scores["overall"]) >= {"strict", "partial"}
    pol = load_policy(path, lora_rank=4, device="cpu")
    grids = generate(pol, ["a red cube on top of a blue sphere", "two green cones"], steps=4)
    assert grids.shape == (2, 4, 16, 16, 16) and torch.isfinite(grids).all()
