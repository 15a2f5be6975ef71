"""A run that diverges or has nothing to learn from must not finish as a success: non-finite samples are never
scored (their groups are dropped), non-finite weights abort, N idle steps in a row abort; rewards reject NaN images;
config values that would train silently wrong are refused before anything is written."""

import os

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model

import rewards
from genrl.cli import main as cli
from genrl.config import save_config
from genrl.loop import Trainer, TrainingAborted
from rewards.base import RewardOutput


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


@pytest.mark.parametrize("name", ["shapes", "jpeg_compressibility"])
def test_rewards_reject_nan_images(name):
    imgs = torch.full((2, 3, 32, 32), 0.5)
    imgs[1, 0, 0, 0] = float("nan")
    meta = [{"objects": []}] * 2 if name == "shapes" else None
    with pytest.raises(ValueError, match=r"non-finite values \(NaN/inf\) in sample\(s\) \[1\]"):
        rewards.load(name)(imgs, ["a photo of a red circle"] * 2, meta)
    with pytest.raises(ValueError, match="prompts is None"):
        rewards.load("jpeg_compressibility")(imgs[:1].clamp(0, 1).nan_to_num(0.5), None)


def test_diverged_run_aborts_with_a_clear_message(model, tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    save_config(tiny_config(model, str(tmp_path / "run"), train={"steps": 6, "lr": 1e12}, eval={"every": 0}),
                str(cfg_path))
    assert cli(["train", str(cfg_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "lower train.lr" in err, err


def test_nonfinite_samples_are_dropped_not_scored(model, tmp_path):
    tr = Trainer(tiny_config(model, str(tmp_path / "run"), eval={"every": 0}), progress=False)
    imgs = torch.rand(4, 3, 16, 16)
    imgs[2] = float("nan")
    out, bad = tr._score(imgs, ["a photo of a red circle"] * 4, None)
    assert bad.tolist() == [False, False, True, False] and torch.isfinite(out.scores).all()


def test_idle_steps_abort(model, tmp_path):
    tr = Trainer(tiny_config(model, str(tmp_path / "run"), train={"steps": 5}, eval={"every": 0},
                             run={"dir": str(tmp_path / "run"), "seed": 0, "tensorboard": False, "max_idle_steps": 2}),
                 progress=False, log_fn=lambda m: None)
    tr.reward_fn = lambda outputs, prompts, meta=None: RewardOutput(torch.zeros(len(prompts)), {})
    with pytest.raises(TrainingAborted, match="2 steps in a row had nothing to learn from"):
        tr.run()
    assert tr.step == 2


@pytest.mark.parametrize("override,message", [
    ("train.lr=0", "'train.lr' must be a finite number > 0"),
    ("train.lr=-1e-4", "'train.lr' must be a finite number > 0"),
    ("train.lr=.nan", "'train.lr' must be a finite number > 0"),
    ("checkpoint.every=-1", "'checkpoint.every' must be >= 0"),
    ("sample.group_size=0", "'sample.group_size' must be >= 2"),
    ("sample.noise_level=-0.1", "'sample.noise_level' must be a finite number >= 0"),
    ("sample.resolution=0", "'sample.resolution' must be a positive number"),
    ("rewards.shapes=.inf", "'rewards.shapes' must be a finite weight"),
    ("sample.method=ddpm", "'sample.method' must be one of"),
])
def test_bad_values_refused_before_anything_is_written(model, tmp_path, capsys, override, message):
    cfg_path = tmp_path / "c.yaml"
    run = tmp_path / "run"
    save_config(tiny_config(model, str(run)), str(cfg_path))
    assert cli(["train", str(cfg_path), override, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not os.path.exists(run)


def test_prompts_the_reward_cannot_score_are_refused_before_anything_is_written(model, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of two red circles\na photo of two purple dragons\n")
    cfg_path = tmp_path / "c.yaml"
    run = tmp_path / "run"
    save_config(tiny_config(model, str(run), data={"prompts": str(prompts)}), str(cfg_path))
    assert cli(["train", str(cfg_path), "--no-progress"]) == 2
    assert "unknown shape 'dragons'" in capsys.readouterr().err
    assert cli(["train", str(cfg_path), "rewards={ocr: 1.0}", f"data.prompts={prompts}", "--no-progress"]) == 2
    assert "has no text in double quotes" in capsys.readouterr().err
    assert not os.path.exists(run)
    from rewards.shapes.world import parse_prompt

    with pytest.raises(ValueError) as e:
        parse_prompt("x" * 10000)
    assert len(str(e.value)) < 500 and "(10000 characters)" in str(e.value)  # not 20,000 characters


def test_sample_refuses_to_overwrite_and_score_refuses_a_directory(model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sample_00.png").write_bytes(b"earlier")
    args = ["sample", "--model", model, "--prompt", "a photo of a red circle", "--num", "1", "--out", str(out)]
    assert cli(args) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "sample_00.png").read_bytes() == b"earlier"
    assert cli(["sample", "--model", str(out / "sample_00.png"), "--prompt", "x", "--out", str(tmp_path / "o2")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert cli(["score", "--reward", "jpeg_compressibility", "--images", str(out), "--prompts", str(out / "x"),
                "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_help_documents_options_and_config_keys(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    text = capsys.readouterr().out
    assert "train: steps, lr," in text and "docs/training.md" in text
    with pytest.raises(SystemExit):
        cli(["sample", "--help"])
    assert "(default: 20)" in capsys.readouterr().out
