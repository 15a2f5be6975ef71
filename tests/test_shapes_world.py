"""Shapes world: prompt generator splits, grammar round trip, renderer + reward accuracy and rejection cases."""

import random

import numpy as np
import pytest
import torch

import rewards
from genrl.shapes.prompts import HELD_OUT_PAIRS, HELD_OUT_POSITIONS, PromptSampler, category_pool, split_specs
from genrl.shapes.render import render, render_batch
from rewards.shapes import make_spec, parse_prompt, spec_to_prompt
from rewards.shapes.world import CATEGORIES, COLORS, SHAPES


def _pairs(spec):
    return {(o.get("color"), o["class"]) for o in spec["include"]}


def test_splits_deterministic_and_cover_categories():
    a, b = split_specs("eval"), split_specs("eval")
    assert [s["prompt"] for s in a] == [s["prompt"] for s in b]
    assert {s["tag"] for s in a} == set(CATEGORIES)
    assert len(a) == 6 * 48
    assert [s["prompt"] for s in PromptSampler(seed=3).sample(50)] == [
        s["prompt"] for s in PromptSampler(seed=3).sample(50)
    ]
    assert len(SHAPES) >= 3 and len(COLORS) >= 6


@pytest.mark.parametrize("category", ["position", "color_attr", "counting"])
def test_held_out_compositions_disjoint(category):
    train = {s["prompt"] for s in category_pool(category, "train")}
    ev = category_pool(category, "eval")
    held = set(HELD_OUT_PAIRS)
    if category == "counting":  # coloured counting prompts are disjoint; colourless ones are shared
        ev = [s for s in ev if s["include"][0].get("color")]
    assert ev and train and not train & {s["prompt"] for s in ev}
    for s in category_pool(category, "train"):
        assert not _pairs(s) & held
        if category == "position":
            o = s["include"]
            assert (o[0]["class"], o[0]["position"][0], o[1]["class"]) not in HELD_OUT_POSITIONS
    if category != "position":
        assert all(_pairs(s) & held for s in ev)


def test_grammar_round_trip_and_errors():
    for s in split_specs("train") + split_specs("eval", 10):
        p = parse_prompt(s["prompt"])
        assert p["tag"] == s["tag"] and p["include"] == s["include"]
    assert parse_prompt("two red circles")["include"] == [{"class": "circle", "count": 2, "color": "red"}]
    assert parse_prompt("A photo of a square ABOVE a triangle.")["include"][0]["position"] == ["above", 1]
    spec = make_spec("color_attr", [{"class": "circle", "count": 1, "color": "red"},
                                    {"class": "square", "count": 1, "color": "blue"}])
    assert spec_to_prompt(spec) == "a photo of a red circle and a blue square"
    for bad in ("a photo of a dog", "five circles", "a mauve circle", "two circle"):
        with pytest.raises(ValueError):
            parse_prompt(bad)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_reward_accepts_ground_truth_renders(size):
    specs = split_specs("eval")
    x = (torch.from_numpy(render_batch(specs, size, seed=size)) + 1) / 2
    out = rewards.load("shapes")(x, [s["prompt"] for s in specs], [{"spec": s} for s in specs])
    assert out.details["strict"].mean() >= 0.99
    assert out.scores.mean() >= 0.99
    # without metadata the prompt is parsed: same result
    out2 = rewards.load("shapes", score="strict")(x[:40], [s["prompt"] for s in specs[:40]])
    assert torch.equal(out2.scores, out.details["strict"][:40])


def _score(img, prompt):
    out = rewards.load("shapes")([img], [prompt])
    return out.details["strict"].item(), out.details["partial"].item()


def test_reward_rejects_noise_and_blank():
    rng = np.random.default_rng(0)
    prompts = [s["prompt"] for s in split_specs("eval", 8)]
    for p in prompts:
        noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        blank = np.full((32, 32, 3), 255, np.uint8)
        for img in (noise, blank):
            strict, partial = _score(img, p)
            assert strict == 0 and partial <= 0.15, p


def test_reward_rejects_wrong_count_colour_relation():
    def img(prompt, seed=0):
        return render(parse_prompt(prompt), 32, random.Random(seed))

    # wrong count
    assert _score(img("a photo of three circles"), "a photo of two circles") == (0.0, 0.5)
    assert _score(img("a photo of a square"), "a photo of four squares")[0] == 0
    # wrong colour
    assert _score(img("a photo of a blue circle"), "a photo of a red circle") == (0.0, 0.5)
    s, p = _score(img("a photo of a red circle and a blue square"), "a photo of a blue circle and a red square")
    assert s == 0 and p <= 0.6
    # wrong relation (the opposite one)
    for rel, opp in (("left of", "right of"), ("above", "below")):
        s, p = _score(img(f"a photo of a circle {rel} a square", 1), f"a photo of a circle {opp} a square")
        assert s == 0 and p == pytest.approx(2 / 3)
    # wrong shape / extra object
    assert _score(img("a photo of a triangle"), "a photo of a circle") == (0.0, 0.0)
    assert _score(img("a photo of a circle and a square"), "a photo of a circle")[0] == 0
