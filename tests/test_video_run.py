"""RL on video with the one loop: the shipped configs/video/{grpo,nft,awm}.yaml run 2 steps on a tiny random
pixel-space Wan model (the moving-shapes world's layout); sample grids are GIFs; genrl eval / sample / export
work for the video model."""

import json
import os

import pytest
import torch

from genrl.config import load_config
from genrl.loop import Trainer

TINY = ["sample.group_size=2", "sample.groups_per_step=2", "sample.batch_size=4", "sample.steps=4",
        "train.steps=2", "train.batch_size=2", "eval.every=2", "eval.num_prompts=3", "eval.steps=2",
        "eval.batch_size=3", "eval.grid_images=3", "checkpoint.every=2", "model.lora_rank=2", "run.tensorboard=false",
        "advantage.filter_zero_std=false", "run.max_idle_steps=0"]


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    from genrl.worlds.motion.model import MotionModelConfig, build_model, save_pipeline

    cfg = MotionModelConfig(num_layers=1, ffn_dim=32, num_attention_heads=2, attention_head_dim=8, text_dim=16,
                            text_layers=1)
    path = str(tmp_path_factory.mktemp("video") / "base")
    save_pipeline(path, *build_model(cfg), cfg, extra={"prediction": "x0"})
    return path


@pytest.mark.parametrize("method", ["grpo", "nft", "awm"])
def test_video_configs_run_two_steps(method, tiny_video, tmp_path):
    extra = ["sample.sde_window_range=[0,3]", "sample.sde_window_size=2"] if method != "nft" else []
    if method == "awm":
        extra.append("algorithm.n_train=2")
    cfg = load_config(f"configs/video/{method}.yaml",
                      [f"model.path={tiny_video}", f"run.dir={tmp_path / 'run'}", *TINY, *extra])
    trainer = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in trainer.policy.trainable_state().items()}
    res = trainer.run()
    assert res.steps_done == 2
    after = trainer.policy.trainable_state()
    assert any((after[k] - before[k]).abs().max() > 0 for k in before)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train = [r for r in rows if "train/reward_mean" in r]
    assert train and all(0.0 <= r["train/reward_mean"] <= 1.0 for r in train)
    assert "train/reward_motion/motion" in train[0]  # the reward's checks are logged
    grids = [r["eval/grid"] for r in rows if "eval/grid" in r]
    assert grids and all(g.endswith(".gif") for g in grids)
    assert os.path.isfile(tmp_path / "run" / grids[-1])


def test_video_cli_eval_sample_export(tiny_video, tmp_path):
    from genrl.cli import main

    run_dir = tmp_path / "run"
    cfg = load_config("configs/video/nft.yaml", [f"model.path={tiny_video}", f"run.dir={run_dir}", *TINY])
    Trainer(cfg, progress=False).run()
    out = tmp_path / "scores.json"
    assert main(["eval", "--model", tiny_video, "--split", "eval", "--per-category", "2", "--steps", "2",
                 "--out", str(out), "--grid", str(tmp_path / "grid.gif")]) == 0
    report = json.load(open(out))
    assert set(report["overall"]) >= {"strict", "partial"} and report["overall"]["n"] == 6
    assert set(report["per_category"]) == {"direction", "still", "two_motion"}
    assert os.path.isfile(tmp_path / "grid.gif")
    assert main(["sample", "--model", tiny_video, "--prompt", "a red circle moving left", "--num", "2",
                 "--steps", "2", "--out", str(tmp_path / "s"), "--lora", str(run_dir), "--rlg-scale", "1.5"]) == 0
    assert sorted(os.listdir(tmp_path / "s")) == ["grid.gif", "sample_00.gif", "sample_01.gif"]
    sweep = tmp_path / "rlg"
    assert main(["rlg-sweep", "--model", tiny_video, "--lora", str(run_dir), "--scales", "0,1", "--num-prompts", "3",
                 "--steps", "2", "--out", str(sweep)]) == 0
    assert os.path.isfile(sweep / "samples_w0.gif") and os.path.isfile(sweep / "samples_w1.gif")
    assert "motion/strict" in open(sweep / "rlg_sweep.md").read()
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path / "lora")]) == 0
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(tiny_video, vae=None, transformer_2=None)  # pixel space: no VAE
    pipe.load_lora_weights(str(tmp_path / "lora"))  # the exported LoRA loads into diffusers unchanged
    assert main(["export", "--run", str(run_dir), "--merge", "--out", str(tmp_path / "merged")]) == 0
    index = json.load(open(tmp_path / "merged" / "model_index.json"))
    assert index["genrl_pixel_space"] is True and index["prediction"] == "x0"  # still a genrl world model
    from genrl.policies import load_policy

    merged = load_policy(str(tmp_path / "merged"), lora_rank=2, device="cpu")
    tuned = __import__("genrl.rlg", fromlist=["load_rlg_policy"]).load_rlg_policy(tiny_video, str(run_dir))
    x = torch.randn(merged.noise_shape(1))
    c = merged.encode(["a square moving up"])
    torch.testing.assert_close(merged.velocity(x, torch.tensor(0.5), c), tuned.velocity(x, torch.tensor(0.5), c),
                               atol=1e-4, rtol=1e-4)


def test_bad_video_input_is_one_line_and_writes_nothing(tiny_video, tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config("configs/video/nft.yaml", [f"model.path={tiny_video}", f"run.dir={run_dir}", *TINY,
                                                  "rewards={jpeg_compressibility: 1.0}"])
    with pytest.raises(ValueError, match="scores images but the model generates video.*per_frame"):
        Trainer(cfg, progress=False)
    assert not run_dir.exists() or not os.listdir(run_dir)
    from genrl.policies import load_policy

    with pytest.raises(ValueError, match="num_frames 7 gives 7 latent frames, not a multiple of the temporal patch 2"):
        load_policy(tiny_video, num_frames=7, device="cpu")
    with pytest.raises(ValueError, match="multiples of 4"):
        load_policy(tiny_video, height=30, device="cpu")
    import rewards

    clip = torch.rand(1, 8, 3, 32, 32)
    clip[0, 3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        rewards.load("motion")(clip, ["a red circle moving right"])


@pytest.mark.slow
def test_video_resume_is_exact(tiny_video, tmp_path):
    from safetensors.torch import load_file

    from genrl.cli import main

    over = [f"model.path={tiny_video}", *TINY, "train.steps=4", "eval.every=0", "checkpoint.every=2"]
    Trainer(load_config("configs/video/grpo.yaml", over + [f"run.dir={tmp_path / 'a'}",
                        "sample.sde_window_range=[0,3]", "sample.sde_window_size=2"]), progress=False).run()
    Trainer(load_config("configs/video/grpo.yaml", over + [f"run.dir={tmp_path / 'b'}", "train.steps=2",
                        "sample.sde_window_range=[0,3]", "sample.sde_window_size=2"]), progress=False).run()
    assert main(["train", "--resume", str(tmp_path / "b"), "train.steps=4", "--no-progress"]) == 0
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000004" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000004" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_video_model_loads_and_samples():
    from genrl.policies import load_policy
    from genrl.shapes.generate import generate

    path = "assets/motion-video-base"
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    assert "video" in os.path.basename(path) and size < 20e6
    index = json.load(open(os.path.join(path, "model_index.json")))
    assert index["_class_name"] == "WanPipeline" and index["genrl_pixel_space"] and index["prediction"] == "x0"
    assert index["genrl_pretrain"]["cpu_minutes_done"] <= 60.5
    scores = json.load(open(os.path.join(path, "eval_scores.json")))
    assert set(scores["overall"]) >= {"strict", "partial"}
    pol = load_policy(path, lora_rank=4, device="cpu")
    clips = generate(pol, ["a red circle moving right", "a blue square and a triangle moving apart"], steps=4)
    assert clips.shape == (2, 8, 3, 32, 32) and torch.isfinite(clips).all()
