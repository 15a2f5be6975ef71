"""GenEval: rule engine on synthetic detections, and the detector path with tiny random models loaded by path."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rewards import geneval_rules as R


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only thrash on a shared CPU
    yield
    torch.set_num_threads(n)


def det(x1, y1, x2, y2, score=0.95, color=None):
    return R.Detection(box=[x1, y1, x2, y2], score=score, color=color)


def meta(tag, include, exclude=()):
    return {"tag": tag, "include": list(include), "exclude": list(exclude)}


# ---- filtering ----------------------------------------------------------------------------------------------------
def test_filter_thresholds_and_max_objects():
    raw = {"cat": [det(0, 0, 1, 1, s) for s in (0.2, 0.31, 0.5, 0.95)], "dog": [det(0, 0, 1, 1, 0.1)]}
    f = R.filter_detections(raw, "two_object")
    assert [d.score for d in f["cat"]] == [0.95, 0.5, 0.31] and "dog" not in f
    f = R.filter_detections(raw, "counting")  # counting threshold 0.9
    assert [d.score for d in f["cat"]] == [0.95]
    many = {"cat": [det(0, 0, 1, 1, 0.5 + i / 100) for i in range(20)]}
    assert len(R.filter_detections(many, "single_object")["cat"]) == R.MAX_OBJECTS == 16


# ---- counting -----------------------------------------------------------------------------------------------------
def test_counting_exact_more_and_fewer():
    m = meta("counting", [{"class": "cat", "count": 2}], [{"class": "cat", "count": 3}])
    two = {"cat": [det(0, 0, 10, 10), det(20, 0, 30, 10)]}
    v = R.judge(two, m)
    assert v.official and v.strict and v.score == 1.0
    three = {"cat": [det(0, 0, 10, 10), det(20, 0, 30, 10), det(40, 0, 50, 10)]}
    v = R.judge(three, m)
    assert not v.official and not v.strict and v.score == pytest.approx(0.5)  # 1 - |2-3|/2
    one = {"cat": [det(0, 0, 10, 10), det(20, 0, 30, 10, score=0.5)]}  # second one below the 0.9 threshold
    v = R.judge(one, m)
    assert not v.official and not v.strict and v.score == pytest.approx(0.5)


def test_official_is_lower_bound_strict_is_exact():
    m = meta("two_object", [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}])
    dets = {"cat": [det(0, 0, 10, 10), det(50, 0, 60, 10)], "dog": [det(20, 0, 30, 10)]}
    v = R.judge(dets, m)
    assert v.official and not v.strict and v.score == pytest.approx((0.0 + 1.0) / 2)  # cat: 1-|1-2|/1 = 0


# ---- colour -------------------------------------------------------------------------------------------------------
def test_colour_rules():
    m = meta("colors", [{"class": "car", "count": 1, "color": "red"}])
    assert R.judge({"car": [det(0, 0, 9, 9, color="red")]}, m).strict
    v = R.judge({"car": [det(0, 0, 9, 9, color="blue")]}, m)
    assert not v.official and not v.strict and v.score == pytest.approx(0.5)  # count 1, colour 0
    v = R.judge({}, m)  # missing object: count 0 and colour 0 (count wrong)
    assert v.score == 0.0 and not v.official


def test_color_attr_two_classes_uses_classifier_callable():
    m = meta("color_attr", [{"class": "bus", "count": 1, "color": "yellow"}, {"class": "cup", "count": 1,
                                                                              "color": "green"}])
    dets = {"bus": [det(0, 0, 9, 9)], "cup": [det(20, 0, 29, 9)]}
    calls = []

    def classify(cls, objs):
        calls.append((cls, len(objs)))
        return ["yellow" if cls == "bus" else "pink"] * len(objs)

    v = R.judge(dets, m, classify)
    assert not v.strict and v.score == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert sorted(calls) == [("bus", 1), ("cup", 1)]  # each object list classified once for both rule sets


# ---- position -----------------------------------------------------------------------------------------------------
def test_relative_position_margin():
    a, b = det(0, 0, 10, 10), det(30, 0, 40, 10)
    assert R.relative_position(a, b) == {"left of"} and R.relative_position(b, a) == {"right of"}
    top, bottom = det(0, 0, 10, 10), det(0, 40, 10, 50)
    assert R.relative_position(top, bottom) == {"above"} and R.relative_position(bottom, top) == {"below"}
    # offset 1.5 px < margin 0.1*(10+10)=2 px: no relation at all
    assert R.relative_position(det(0, 0, 10, 10), det(1.5, 0, 11.5, 10)) == set()
    # diagonal: both components > 0.5 after normalisation
    assert R.relative_position(det(0, 0, 10, 10), det(50, 50, 60, 60)) == {"left of", "above"}


def test_position_rules_and_half_credit_quirk():
    m = meta("position", [{"class": "dog", "count": 1}, {"class": "cat", "count": 1, "position": ["left of", 0]}])
    ok = {"dog": [det(50, 0, 60, 10)], "cat": [det(0, 0, 10, 10)]}
    v = R.judge(ok, m)
    assert v.official and v.strict and v.score == 1.0
    wrong = {"dog": [det(0, 0, 10, 10)], "cat": [det(50, 0, 60, 10)]}
    v = R.judge(wrong, m)
    # rewards: dog count 1, cat count 1, position 0.0 then 1.0 (published quirk) -> 3/4
    assert not v.official and not v.strict and v.score == pytest.approx(3 / 4)
    no_target = {"cat": [det(0, 0, 10, 10)]}
    v = R.judge(no_target, m)  # dog 0, cat 1, position 0 (no target group)
    assert not v.strict and v.score == pytest.approx(1 / 3)


def test_exclude_clause_and_bad_metadata():
    m = meta("single_object", [{"class": "cat", "count": 1}], [{"class": "dog", "count": 1}])
    v = R.judge({"cat": [det(0, 0, 9, 9)], "dog": [det(20, 0, 29, 9)]}, m)
    assert not v.official and not v.strict
    with pytest.raises(ValueError, match="include"):
        R.judge({}, {"tag": "counting"})
    with pytest.raises(ValueError, match="colour"):
        R.judge({}, meta("colors", [{"class": "car", "count": 1, "color": "teal"}]))
    with pytest.raises(ValueError, match="group"):
        R.judge({}, meta("position", [{"class": "car", "count": 1, "position": ["above", 0]}]))


# ---- detector path with tiny random models --------------------------------------------------------------------------
def _tiny_clip(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    # GPT-2 byte->unicode table: printable bytes map to themselves, the rest to chr(256 + k)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = [b for b in range(256) if b not in bs]
    syms = [chr(b) for b in bs] + [chr(256 + k) for k in range(len(extra))]
    vocab = {s: i for i, s in enumerate(syms + [s + "</w>" for s in syms])}
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer.from_pretrained(path)
    v = len(vocab)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=v - 2, eos_token_id=v - 1,
                         pad_token_id=v - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=30, patch_size=6),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(path)
    ip = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(path)


def _tiny_mask2former(path):
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = Mask2FormerConfig(backbone_config=backbone, hidden_dim=32, mask_feature_size=32, feature_size=32,
                            encoder_layers=1, decoder_layers=2, num_queries=8, num_attention_heads=2,
                            dim_feedforward=64, encoder_feedforward_dim=64, num_labels=3,
                            id2label={0: "cat", 1: "dog", 2: "car"}, label2id={"cat": 0, "dog": 1, "car": 2})
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(cfg)
    with torch.no_grad():  # make one class confident for every query so detections pass the thresholds
        model.class_predictor.bias.copy_(torch.tensor([8.0, 0.0, 0.0, -8.0]))
    model.save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_geneval(tmp_path_factory):
    root = tmp_path_factory.mktemp("geneval")
    (root / "det").mkdir()
    (root / "clip").mkdir()
    _tiny_mask2former(root / "det")
    _tiny_clip(root / "clip")
    import rewards

    return rewards.load("geneval", model=str(root / "det"), clip_model=str(root / "clip"), local_files_only=True,
                        device="cpu")


def test_detector_pipeline_feeds_rule_engine(tiny_geneval, monkeypatch):
    r = tiny_geneval
    assert r.class_names == ["cat", "dog", "car"]
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)) for _ in range(2)]
    raw = r.detect(imgs)
    assert len(raw) == 2 and "cat" in raw[0]
    for d in raw[0]["cat"]:
        x1, y1, x2, y2 = d.box
        assert d.mask.shape == (48, 80) and d.mask.dtype == bool and 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 48
        ys, xs = np.nonzero(d.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        assert 0 < d.score <= 1

    seen = []
    orig = R.judge

    def spy(raw_dets, m, *a, **k):
        seen.append(raw_dets)
        return orig(raw_dets, m, *a, **k)

    monkeypatch.setattr(R, "judge", spy)
    metas = [
        {"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "exclude": []},
        {"tag": "single_object", "include": [{"class": "car", "count": 1}], "exclude": []},
    ]
    out = r(imgs, ["a photo of a red cat", "a photo of a car"], metas)
    assert out.scores.shape == (2,) and out.scores.dtype == torch.float32
    assert [set(s) for s in seen] == [set(x) for x in raw]  # the rule engine got the detector's detections
    assert [len(s["cat"]) for s in seen] == [len(x["cat"]) for x in raw]
    # car is never confident (bias -8): object missing -> 0 on all verdicts
    assert out.details["strict"][1] == 0 and out.details["partial"][1] == 0 and out.details["accuracy"][1] == 0
    expected = [orig(x, m, lambda c, o, im=im: r.classify_colors(im, c, o)) for x, m, im in zip(raw, metas, imgs)]
    assert out.scores.tolist() == pytest.approx([v.score for v in expected])
    assert out.details["tag"] == ["colors", "single_object"]


def test_colour_classifier_and_crop(tiny_geneval):
    r = tiny_geneval
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    mask = np.zeros((20, 40), bool)
    mask[5:10, 5:15] = True
    d = R.Detection(box=[5, 5, 15, 10], score=1.0, mask=mask)
    crop = r.masked_crop(img, d)
    assert crop.size == (10, 5) and crop.getpixel((0, 0)) == (255, 0, 0)
    mask[5, 5] = False
    assert r.masked_crop(img, d).getpixel((0, 0)) == (153, 153, 153)  # #999 background outside the mask
    colors = r.classify_colors(img, "cat", [d, d])
    assert len(colors) == 2 and all(c in R.COLORS for c in colors) and colors[0] == colors[1]


def test_geneval_needs_metadata(tiny_geneval):
    with pytest.raises(ValueError, match="metadata"):
        tiny_geneval([Image.new("RGB", (32, 32))], ["a cat"])
    with pytest.raises(ValueError, match="not a detector class"):
        tiny_geneval([Image.new("RGB", (32, 32))], ["a cow"], [{"tag": "single_object",
                                                                "include": [{"class": "cow", "count": 1}]}])


def test_missing_detector_dir_is_a_clear_error(tmp_path):
    import rewards

    with pytest.raises(FileNotFoundError, match="Mask2Former detector|detector processor"):
        rewards.load("geneval", model=str(tmp_path / "nope"), local_files_only=True, device="cpu")


def test_summarize_is_mean_of_tag_means():
    s = R.summarize(["counting", "counting", "counting", "position"], [1, 0, 0, 1])
    assert s == {"counting": pytest.approx(1 / 3), "position": 1.0, "overall": pytest.approx((1 / 3 + 1) / 2)}
    with pytest.raises(ValueError):
        R.summarize([], [])
