"""CTRL's offline step: `genrl classifier` on a tiny labelled set (folder and jsonl), temperature scaling, the
classifier as a reward loadable on its own, the world's size rule, and bad datasets (one-line errors, nothing
written)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import one_thread

import rewards
from genrl.classifier import fit_temperature, load_dataset
from genrl.cli import main as cli
from rewards.classifier import ImageClassifier

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


def _write_set(root, n=12):
    """n reddish and n bluish 16 px noise images under root/<label>/."""
    rng = np.random.default_rng(0)
    for lab, ch in (("blue", 2), ("red", 0)):
        os.makedirs(root / lab, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 120, (16, 16, 3)).astype(np.uint8)
            a[..., ch] = rng.integers(160, 255, (16, 16))
            Image.fromarray(a).save(root / lab / f"{i:02d}.png")
    return root


def test_classifier_trains_calibrates_and_scores(tmp_path, capsys):
    data = _write_set(tmp_path / "data")
    out = tmp_path / "clf"
    assert cli(["classifier", "--data", str(data), "--out", str(out), "--size", "16", "--widths", "4,8,8",
                "--epochs", "6", "--batch-size", "8", "--lr", "1e-2", "--val-fraction", "0.25"]) == 0
    log = json.load(open(out / "train_log.json"))
    assert log["labels"] == ["blue", "red"]
    assert log["history"][-1]["train_loss"] < log["history"][0]["train_loss"]  # the loss goes down
    assert log["val_acc"] >= 0.8 and log["temperature"] > 0
    clf = ImageClassifier.from_pretrained(str(out))
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.9
    assert clf.labels[int(clf.log_probs(red).argmax())] == "red"
    r = rewards.load("classifier", path=str(out))  # the reward on its own (no genrl import needed)
    o = r(red.repeat(2, 1, 1, 1), ["x", "x"], [{"condition": "red"}, {"condition": "blue"}])
    assert torch.allclose(o.scores.sum(), torch.tensor(1.0), atol=1e-5) and o.details["predicted"] == ["red", "red"]
    with pytest.raises(ValueError, match="not classes of this classifier"):
        r(red, ["x"], [{"condition": "green"}])


def test_temperature_scaling_recovers_the_temperature():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 3, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g)[:, 0]
    assert abs(fit_temperature(3 * z, y) - 3.0) < 0.3  # logits 3x too sharp -> T ~ 3


def test_jsonl_dataset_and_size_rule(tmp_path):
    from rewards.shapes.size import SIZE_THRESHOLD, object_size, size_label

    img = Image.new("RGB", (32, 32), (255, 255, 255))
    big = img.copy()
    big.paste((220, 30, 30), (4, 4, 16, 16))  # 12 px square: 0.375 of the side
    small = img.copy()
    small.paste((35, 65, 225), (4, 4, 12, 12))  # 8 px: 0.25
    big.save(tmp_path / "a.png")
    small.save(tmp_path / "b.png")
    (tmp_path / "d.jsonl").write_text('{"image": "a.png", "label": "large", "prompt": "p"}\n'
                                      '{"image": "b.png", "label": "small"}\n')
    d = load_dataset(str(tmp_path / "d.jsonl"), 32)
    assert d.labels == ["large", "small"] and d.targets.tolist() == [0, 1] and d.rows[0]["prompt"] == "p"
    assert object_size(np.asarray(big, float) / 255) == 0.375 > SIZE_THRESHOLD
    assert size_label(object_size(np.asarray(small, float) / 255)) == "small"
    assert size_label(object_size(np.ones((32, 32, 3)))) is None  # nothing drawn: no label
    out = rewards.load("shapes_size")(torch.from_numpy(np.stack([np.asarray(big), np.asarray(small)])).permute(
        0, 3, 1, 2).float() / 255, ["p", "p"], [{"condition": "large"}, {"condition": "large"}])
    assert out.scores.tolist() == [1.0, 0.0]


def test_bad_datasets_one_line_errors_nothing_written(tmp_path, capsys):
    data = _write_set(tmp_path / "data", n=3)

    def run(src, *extra):
        out = tmp_path / "out"
        rc = cli(["classifier", "--data", str(src), "--out", str(out), "--size", "16", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and not out.exists()
        return err

    (data / "red" / "broken.png").write_bytes(b"not a png")
    assert "cannot read image" in run(data) and "broken.png" in run(data)
    os.remove(data / "red" / "broken.png")
    Image.new("RGB", (16, 16)).save(data / "loose.png")
    assert "has no label" in run(data)
    os.remove(data / "loose.png")
    (tmp_path / "x.jsonl").write_text('{"image": "data/red/00.png", "label": "red"}\n{"image": "data/red/01.png"}\n')
    assert 'x.jsonl:2' in run(tmp_path / "x.jsonl")
    assert "not in --labels" in run(data, "--labels", "red")
    assert "not found" in run(tmp_path / "nope")
