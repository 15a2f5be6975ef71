"""The moving-shapes video world: prompt grammar, splits, renderer and the exact motion reward on hand-made clips."""

import random

import numpy as np
import pytest
import torch

import rewards
from genrl.shapes.render import draw_objects
from genrl.worlds.motion.prompts import EVAL_PER_CATEGORY, category_pool, split_specs
from genrl.worlds.motion.render import render_batch, render_clip
from rewards.motion.world import CATEGORIES, parse_prompt

R = rewards.load("motion")


def clip_of(paths, frames=8, size=32):
    """uint8 [F, S, S, 3] from per-frame object lists [(shape, colour, side, cx, cy)]."""
    return np.stack([np.asarray(draw_objects(paths(f), size)) for f in range(frames)])


def score(clips, prompt):
    out = R(np.stack(clips), [prompt] * len(clips))
    return {k: out.details[k].tolist() for k in ("strict", "partial", "appearance", "count", "identity", "motion",
                                                 "speed", "smooth")}


def test_rendered_clips_are_strictly_correct_for_every_category():
    rng = random.Random(0)
    specs = [s for c in CATEGORIES for s in rng.sample(category_pool(c, "train"), 12)]
    clips = np.stack([render_clip(s, rng=rng) for s in specs])
    out = R(clips, [s["prompt"] for s in specs], [{"spec": s} for s in specs])
    assert out.details["strict"].tolist() == [1.0] * len(specs)
    assert out.scores.tolist() == pytest.approx([1.0] * len(specs))


def test_direction_wrong_way_static_and_still():
    right = lambda f: [("circle", "red", 9, 8 + 2 * f, 16)]  # noqa: E731
    fwd = clip_of(right)
    s = score([fwd, fwd[::-1].copy()], "a red circle moving right")
    assert s["strict"] == [1.0, 0.0] and s["motion"] == [1.0, 0.0]
    assert s["appearance"][1] == 1.0 and s["count"][1] == 1.0  # only the motion is wrong
    assert score([fwd[::-1].copy()], "a red circle moving left")["strict"] == [1.0]
    static = clip_of(lambda f: [("circle", "red", 9, 16, 16)])
    s = score([static], "a red circle moving right")
    assert s["motion"] == [0.0] and s["speed"] == [0.0] and s["strict"] == [0.0]
    assert score([static], "a red circle standing still")["strict"] == [1.0]
    assert score([fwd], "a red circle standing still")["strict"] == [0.0]
    down = clip_of(lambda f: [("square", "blue", 9, 16, 7 + 2 * f)])
    assert score([down], "a blue square moving down")["strict"] == [1.0]
    assert score([down], "a blue square moving up")["motion"] == [0.0]


def test_flicker_jump_and_wrong_colour_are_caught():
    def flicker(f):
        return [] if f == 4 else [("triangle", "green", 9, 8 + 2 * f, 16)]

    s = score([clip_of(flicker)], "a green triangle moving right")
    assert s["count"] == [7 / 8] and s["smooth"] == [0.0] and s["strict"] == [0.0]
    assert s["motion"] == [1.0]  # the track survives the missing frame

    def jump(f):
        return [("triangle", "green", 9, 8 + f + (5 if f >= 4 else 0), 16)]

    s = score([clip_of(jump)], "a green triangle moving right")
    assert s["smooth"] == [0.0] and s["strict"] == [0.0] and s["appearance"] == [1.0]
    s = score([clip_of(lambda f: [("triangle", "green", 9, 8 + 2 * f, 16)])], "a blue triangle moving right")
    assert s["appearance"][0] < 1.0 and s["strict"] == [0.0]


def test_apart_together_and_identity_swap():
    apart = clip_of(lambda f: [("circle", "red", 9, 10 - 0.6 * f, 16), ("square", "blue", 9, 22 + 0.6 * f, 16)])
    s = score([apart, apart[::-1].copy()], "a red circle and a blue square moving apart")
    assert s["strict"] == [1.0, 0.0] and s["motion"] == [1.0, 0.0]
    assert score([apart[::-1].copy()], "a red circle and a blue square moving together")["strict"] == [1.0]

    def swap(f):  # the objects exchange colours and shapes halfway: each track changes identity once
        a, b = ("circle", "red"), ("square", "blue")
        if f >= 4:
            a, b = b, a
        return [(*a, 9, 10 - 0.6 * f, 16), (*b, 9, 22 + 0.6 * f, 16)]

    s = score([clip_of(swap)], "a red circle and a blue square moving apart")
    assert s["identity"] == [pytest.approx(6 / 7)] and s["strict"] == [0.0]
    assert s["appearance"] == [1.0] and s["count"] == [1.0]  # every frame on its own is right


def test_partial_credit_orders_clips_by_how_wrong_they_are():
    good = clip_of(lambda f: [("circle", "red", 9, 8 + 2 * f, 16)])
    wrong_way = good[::-1].copy()
    empty = np.full_like(good, 255)
    p = score([good, wrong_way, empty], "a red circle moving right")["partial"]
    assert p[0] == 1.0 > p[1] > p[2] == 0.0


def test_video_input_forms_agree_and_bad_input_is_one_line():
    clip = render_clip(parse_prompt("a square moving up"), rng=1)
    as_tensor = torch.from_numpy(clip).permute(0, 3, 1, 2).float()[None] / 255
    a = R(clip[None], ["a square moving up"]).scores
    b = R(as_tensor, ["a square moving up"]).scores
    c = R([list(clip)], ["a square moving up"]).scores
    assert a.tolist() == b.tolist() == c.tolist() == [1.0]
    with pytest.raises(ValueError, match=r"\[N, F, 3, H, W\]"):
        R(as_tensor[0], ["a square moving up"])
    with pytest.raises(ValueError, match="permute"):
        R(as_tensor.permute(0, 2, 1, 3, 4), ["a square moving up"])
    with pytest.raises(ValueError, match="cannot parse motion prompt"):
        R(clip[None], ["a square jumping"])
    with pytest.raises(ValueError, match="different shapes"):
        parse_prompt("a circle and a red circle moving apart")
    with pytest.raises(ValueError, match="two objects"):
        parse_prompt("a circle moving apart")


def test_splits_hold_out_coloured_compositions():
    train = {s["prompt"] for s in split_specs("train")}
    ev = split_specs("eval")
    assert len(ev) == EVAL_PER_CATEGORY * len(CATEGORIES)
    held = [s for s in ev if s["tag"] != "still" and all(o.get("color") for o in s["include"])]
    assert held and not any(s["prompt"] in train for s in held)
    counts = {c: sum(s["tag"] == c for s in split_specs("train")) for c in CATEGORIES}
    assert len(set(counts.values())) == 1  # train weighs the categories the same
    x = render_batch(ev[:3], seed=0)
    assert x.shape == (3, 3, 8, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(x, render_batch(ev[:3], seed=0))


def test_per_frame_and_temporal_flickering_on_clips():
    from rewards.video import PerFrame

    clip = torch.from_numpy(render_clip(parse_prompt("a red circle moving right"), rng=3)).permute(0, 3, 1, 2)
    clip = clip.float()[None] / 255
    jpeg = rewards.load("jpeg_compressibility")
    per = rewards.load("per_frame", reward="jpeg_compressibility", every=3)
    out = per(clip, ["x"])
    expected = jpeg(clip[0, [0, 3, 6]], ["x"] * 3).scores
    assert out.details["frame_scores"].shape == (1, 3)
    torch.testing.assert_close(out.scores, expected.mean().reshape(1))
    assert PerFrame(jpeg, every=3, reduce="min")(clip, ["x"]).scores.item() == pytest.approx(expected.min().item())
    with pytest.raises(ValueError, match="not an image reward"):
        PerFrame(rewards.load("motion"))
    flick = rewards.load("temporal_flickering")
    still = clip[:, :1].expand(1, 8, 3, 32, 32)
    noisy = clip.clone()
    noisy[:, ::2] = 1 - noisy[:, ::2]  # every other frame inverted
    s = flick(torch.cat([still, clip, noisy]), ["x"] * 3).scores.tolist()
    assert s[0] == 1.0 > s[1] > s[2]
