"""The 3D shapes world: grammar, splits, scene generator, the exact reward on hand-made voxel scenes, voxel meshes,
renders and PLY export."""

import numpy as np
import pytest
import torch

import rewards
from genrl.worlds.shapes3d.export import read_ply, render_turntable, save_grid_ply, write_ply
from genrl.worlds.shapes3d.prompts import EVAL_PER_CATEGORY, category_pool, split_specs
from genrl.worlds.shapes3d.scenes import render_batch
from rewards.shapes3d import CATEGORIES, primitive_mask, voxel_centres
from rewards.shapes3d.geometry import voxel_mesh
from rewards.shapes3d.world import parse_prompt

R = rewards.load("shapes3d")
N = 16
COL = {"red": (220, 30, 30), "blue": (35, 65, 225), "green": (30, 170, 50)}


def scene(*objects):
    """[4, N, N, N] from (shape, colour, centre, half) tuples."""
    g = np.zeros((4, N, N, N), np.float32)
    for shape, color, c, h in objects:
        m = primitive_mask(shape, c, (h, h, h), N)
        g[0][m] = 1
        g[1:, m] = (np.array(COL[color]) / 255.0)[:, None]
    return g


def score(grids, prompt):
    out = R(np.stack(grids), [prompt] * len(grids))
    return {k: out.details[k].tolist() for k in ("strict", "partial", "count", "shape", "color", "relation")}


def test_generated_scenes_are_strictly_correct_in_every_category_and_split():
    specs = [s for c in CATEGORIES for split in ("train", "eval") for s in category_pool(c, split)[::7][:40]]
    grids = render_batch(specs, seed=1)
    out = R(grids, [s["prompt"] for s in specs], [{"spec": s} for s in specs])
    assert out.details["strict"].tolist() == [1.0] * len(specs)
    assert grids.shape[1:] == (4, N, N, N) and set(np.unique(grids[:, 0])) == {0.0, 1.0}


def test_splits_hold_out_coloured_compositions():
    for c in ("two_object", "relation"):
        train = {s["prompt"] for s in category_pool(c, "train")}
        held = [s for s in split_specs("eval") if s["tag"] == c]
        assert len(held) == EVAL_PER_CATEGORY and not {s["prompt"] for s in held} & train
    assert len(split_specs("eval")) == EVAL_PER_CATEGORY * len(CATEGORIES)


def test_grammar_round_trip_and_one_line_errors():
    spec = parse_prompt("A red cube on top of a blue sphere.")
    assert spec["tag"] == "relation" and spec["include"][0]["position"] == ["on top of", 1]
    assert spec["prompt"] == "a red cube on top of a blue sphere"
    assert parse_prompt("two green cones")["include"] == [{"class": "cone", "count": 2, "color": "green"}]
    assert parse_prompt("a cube and a cylinder")["tag"] == "two_object"
    with pytest.raises(ValueError, match="unknown primitive 'pyramid'.*shapes are cube, sphere, cone, cylinder"):
        parse_prompt("a red pyramid")
    with pytest.raises(ValueError, match="different shapes"):
        parse_prompt("a cube left of a cube")
    with pytest.raises(ValueError, match="unknown primitive"):
        R(np.zeros((1, 4, N, N, N), np.float32), ["a torus"])


def test_colour_shape_relation_and_merged_objects():
    red_cube_on_blue_sphere = scene(("cube", "red", (8.5, 11.5, 8.5), 2.5), ("sphere", "blue", (8.5, 4.5, 8.5), 2.5))
    swapped = scene(("cube", "red", (8.5, 4.5, 8.5), 2.5), ("sphere", "blue", (8.5, 11.5, 8.5), 2.5))
    wrong_colour = scene(("cube", "green", (8.5, 11.5, 8.5), 2.5), ("sphere", "blue", (8.5, 4.5, 8.5), 2.5))
    wrong_shape = scene(("cylinder", "red", (8.5, 11.5, 8.5), 2.5), ("sphere", "blue", (8.5, 4.5, 8.5), 2.5))
    merged = scene(("cube", "red", (8.5, 9.5, 8.5), 2.5), ("sphere", "blue", (8.5, 4.5, 8.5), 2.5))  # touching
    s = score([red_cube_on_blue_sphere, swapped, wrong_colour, wrong_shape, merged],
              "a red cube on top of a blue sphere")
    assert s["strict"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert s["relation"] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert s["color"] == [1.0, 1.0, 0.5, 1.0, 0.0]  # merged: one object of the mixed colour, matching neither
    assert s["shape"][:4] == [1.0, 1.0, 1.0, 0.5] and s["shape"][4] <= 0.5  # one object for two prompt objects
    assert s["count"] == [1.0, 1.0, 1.0, 1.0, 0.0]  # the merged pair is one object
    assert s["partial"][1] == pytest.approx(0.75) and s["partial"][2] == pytest.approx(0.875)


def test_counting_checks_subsets_and_not_applicable_checks():
    two = scene(("cone", "green", (4.5, 4.5, 4.5), 2.5), ("cone", "green", (11.5, 11.5, 11.5), 3.5))
    three = scene(("cone", "green", (4.5, 4.5, 4.5), 2.5), ("cone", "green", (11.5, 11.5, 11.5), 3.5),
                  ("cone", "green", (4.5, 11.5, 11.5), 2.5))
    s = score([two, three], "two green cones")
    assert s["strict"] == [1.0, 0.0] and s["count"] == [1.0, 0.0] and s["shape"] == [1.0, 1.0]
    plain = R(np.stack([two]), ["two cones"]).details
    assert np.isnan(plain["color"][0]) and np.isnan(plain["relation"][0])  # nothing to check: NaN, not credit
    geometry = rewards.load("shapes3d", checks=["count", "shape"])
    colour = rewards.load("shapes3d", checks=["color"])
    wrong = scene(("cone", "blue", (4.5, 4.5, 4.5), 2.5), ("cone", "blue", (11.5, 11.5, 11.5), 3.5))
    assert geometry(np.stack([wrong]), ["two green cones"]).scores.tolist() == [1.0]
    assert colour(np.stack([wrong]), ["two green cones"]).scores.tolist() == [0.0]
    assert colour(np.stack([wrong]), ["two cones"]).scores.tolist() == [1.0]  # no colour named: nothing to get wrong
    with pytest.raises(ValueError, match="checks must be a non-empty subset"):
        rewards.load("shapes3d", checks=["texture"])


def test_bad_voxel_input_is_one_line():
    g = np.zeros((1, 4, N, N, N), np.float32)
    with pytest.raises(ValueError, match=r"shape \[N, 4, G, G, G\]"):
        R(g[:, :3], ["a cube"])
    bad = g.copy()
    bad[0, 0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        R(bad, ["a cube"])
    with pytest.raises(ValueError, match=r"\[0, 1\].*\(x \+ 1\) / 2"):
        R(g - 1, ["a cube"])
    assert R(g, ["a cube"]).scores.tolist() == [0.0]  # an empty asset is scored, not an error


def test_voxel_mesh_render_and_ply_round_trip(tmp_path):
    g = scene(("cube", "red", (8.5, 8.5, 8.5), 2.5))  # a 5^3 cube: 6 faces x 25 voxel faces
    mesh = voxel_mesh(g)
    assert mesh["faces"].shape == (6 * 25 * 2, 3) and mesh["verts"].shape == (6 * 25 * 4, 3)
    # voxels 6..10 of 16: faces from 6/16 to 11/16 of the way across [-1, 1]
    assert mesh["verts"].min() == pytest.approx(6 / 8 - 1) and mesh["verts"].max() == pytest.approx(11 / 8 - 1)
    assert voxel_centres(g[0] > 0.5).shape == (125, 3)
    views = render_turntable(g, n_views=4, size=64)
    assert views.shape == (4, 3, 64, 64)
    centre, corner = views[:, :, 32, 32], views[:, :, 1, 1]
    assert (centre[:, 0] > 2 * centre[:, 2]).all() and torch.allclose(corner, torch.ones(4, 3))  # red on white
    path = save_grid_ply(torch.from_numpy(g), str(tmp_path / "cube.ply"))
    back = read_ply(path)
    np.testing.assert_allclose(back["verts"], mesh["verts"], atol=1e-4)
    np.testing.assert_array_equal(back["faces"], mesh["faces"])
    np.testing.assert_allclose(back["colors"], np.round(mesh["colors"] * 255) / 255, atol=1e-6)
    with pytest.raises(ValueError, match="empty.*nothing written"):
        write_ply(str(tmp_path / "empty.ply"), voxel_mesh(np.zeros((4, N, N, N), np.float32)))
    assert not (tmp_path / "empty.ply").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cube.ply"]


def test_multiview_reward_scores_voxel_grids():
    mv = rewards.load("multiview3d", image_reward="shapes", n_views=2, resolution=64, elevation=0.0)
    g = scene(("cube", "red", (8.5, 8.5, 8.5), 3.5))
    out = mv(torch.from_numpy(np.stack([g])), ["a photo of a red square"])
    assert out.details["view_scores"][0].shape == (2,) and 0.0 <= float(out.scores[0]) <= 1.0
