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


def test_jsonl_dataset_and_attribute_rules(tmp_path):
    from rewards.shapes.attributes import ATTRIBUTES, SIZE_THRESHOLD, attribute_for_labels, object_side, object_size

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
    size, side = ATTRIBUTES["size"], ATTRIBUTES["side"]
    assert size.label(object_size(np.asarray(small, float) / 255)) == "small"
    assert size.label(object_size(np.ones((32, 32, 3)))) is None  # nothing drawn: no label
    batch = torch.from_numpy(np.stack([np.asarray(big), np.asarray(small)])).permute(0, 3, 1, 2).float() / 255
    out = rewards.load("shapes_size")(batch, ["p", "p"], [{"condition": "large"}, {"condition": "large"}])
    assert out.scores.tolist() == [1.0, 0.0]
    # side: box centres at x = 10 and 8 of 32 -> "left"; a square at x 20-28 (centre 24) -> "right"
    right = img.copy()
    right.paste((220, 30, 30), (20, 4, 28, 12))
    assert object_side(np.asarray(big, float) / 255) == 10 / 32 and side.label(10 / 32) == "left"
    two = big.copy()
    two.paste((35, 65, 225), (22, 20, 30, 28))  # centres 10 and 26: mean 18 / 32 -> "right"
    assert object_side(np.asarray(two, float) / 255) == 18 / 32
    batch = torch.from_numpy(np.stack([np.asarray(x) for x in (big, right, two)])).permute(0, 3, 1, 2).float() / 255
    out = rewards.load("shapes_side")(batch, ["p"] * 3, [{"condition": "left"}, {"condition": "left"},
                                                         {"condition": "right"}])
    assert out.scores.tolist() == [1.0, 0.0, 1.0] and out.details["label"] == ["left", "right", "right"]
    assert attribute_for_labels(["right", "left"]) is side
    with pytest.raises(ValueError, match="shapes_side: metadata.0. needs 'condition'"):
        rewards.load("shapes_side")(batch[:1], ["p"], [{"condition": "large"}])
    with pytest.raises(ValueError, match="no shapes-world attribute has the labels"):
        attribute_for_labels(["up", "down"])


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


def test_attribute_dataset_labels_match_the_rule(tmp_path):
    from genrl.shapes.attribute_data import render_attribute_dataset
    from rewards.shapes.attributes import ATTRIBUTES

    counts = render_attribute_dataset(str(tmp_path / "d"), 12, "side")["render"]
    rows = [json.loads(line) for line in open(tmp_path / "d" / "labels.jsonl")]
    assert sum(counts.values()) == len(rows) >= 10 and set(counts) == {"left", "right"}
    for r in rows:  # the saved PNG measures to the written value and label
        img = np.asarray(Image.open(tmp_path / "d" / r["image"]), dtype=np.float64) / 255
        assert r["image"].startswith(r["label"] + "/") and ATTRIBUTES["side"].label(r["side"]) == r["label"]
        assert abs(ATTRIBUTES["side"].measure(img) - r["side"]) < 1e-4
    with pytest.raises(ValueError, match="exists and is not empty"):
        render_attribute_dataset(str(tmp_path / "d"), 12, "side")
    with pytest.raises(ValueError, match="--attribute 'colour' is not one of"):
        render_attribute_dataset(str(tmp_path / "e"), 12, "colour")
    assert not (tmp_path / "e").exists()


def test_attribute_dataset_reject_class_with_generated_samples(tmp_path):
    """--reject-class labels every image that is not well formed (here: most samples of an untrained model), and
    --generate adds model samples tagged with their source; renders keep the attribute rule."""
    from loop_helpers import tiny_shapes_model

    from genrl.shapes.attribute_data import render_attribute_dataset
    from rewards.shapes.attributes import ATTRIBUTES, well_formed

    model = tiny_shapes_model(str(tmp_path / "base"))
    counts = render_attribute_dataset(str(tmp_path / "d"), 8, "size", reject="malformed", generate=("base",),
                                      num_generated=6, model=model, steps=2)
    rows = [json.loads(line) for line in open(tmp_path / "d" / "labels.jsonl")]
    assert [r["source"] for r in rows].count("base") == sum(counts["base"].values()) == 6  # never skipped
    assert counts["base"]["malformed"] >= 1
    for r in rows:
        img = np.asarray(Image.open(tmp_path / "d" / r["image"]), dtype=np.float64) / 255
        assert r["image"].startswith(r["label"] + "/")
        assert (r["label"] == "malformed") == (not well_formed(img))
        if r["label"] != "malformed":
            assert ATTRIBUTES["size"].label(ATTRIBUTES["size"].measure(img)) == r["label"]
    with pytest.raises(ValueError, match="--reject-class 'large' is one of the size labels"):
        render_attribute_dataset(str(tmp_path / "e"), 8, "size", reject="large")
    with pytest.raises(FileNotFoundError, match="--generate 'nope' does not exist"):
        render_attribute_dataset(str(tmp_path / "e"), 8, "size", reject="x", generate=("nope",), num_generated=2)
    assert not (tmp_path / "e").exists()
