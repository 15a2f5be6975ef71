"""multiview3d: the torch renderer on a cube and a sphere (analytic silhouettes), and view aggregation."""

import math

import pytest
import torch

import rewards
from rewards import render3d as R
from rewards.base import Reward, RewardOutput

D, FOV, SIZE = 3.0, 40.0, 128


def _focal():
    return (SIZE / 2) / math.tan(math.radians(FOV) / 2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared CPU
    yield
    torch.set_num_threads(n)


def test_sphere_mesh_silhouette_matches_analytic_and_views_agree():
    cams = R.orbit_cameras(6, elevation=25, radius=D, fov=FOV, size=SIZE)
    _, alpha = R.render_views(R.uv_sphere(0.5, 48, 96), cams)
    r_img = _focal() * 0.5 / math.sqrt(D**2 - 0.5**2)  # tangent cone: f * tan(asin(r / d))
    areas = alpha.sum((1, 2)).float()
    assert areas.max() - areas.min() <= 0.01 * areas.mean()
    assert areas.mean().item() == pytest.approx(math.pi * r_img**2, rel=0.02)
    # centred: the silhouette's centroid is the image centre
    ys, xs = torch.nonzero(alpha[0], as_tuple=True)
    assert (xs.float().mean() + 0.5).item() == pytest.approx(SIZE / 2, abs=0.5)
    assert (ys.float().mean() + 0.5).item() == pytest.approx(SIZE / 2, abs=0.5)


def test_sphere_point_cloud_silhouette():
    cams = R.orbit_cameras(3, elevation=0, radius=D, fov=FOV, size=SIZE)
    rho = 0.02
    _, alpha = R.render_views(R.sphere_points(0.5, 20000), cams, point_size=rho)
    f = _focal()
    lo = math.pi * (f * 0.5 / math.sqrt(D**2 - 0.25)) ** 2
    hi = math.pi * (f * (0.5 + rho) / math.sqrt(D**2 - 0.25)) ** 2 * 1.03
    areas = alpha.sum((1, 2)).float()
    assert ((areas > lo) & (areas < hi)).all(), (areas, lo, hi)
    # no holes inside the disk: the central 20x20 pixels are all covered
    c = SIZE // 2
    assert alpha[:, c - 10:c + 10, c - 10:c + 10].all()


def test_cube_silhouettes_face_colours_and_occlusion():
    cams = R.orbit_cameras(8, elevation=0, radius=D, fov=FOV, size=SIZE)
    img, alpha = R.render_views(R.cube_mesh(0.5), cams, shading=False)
    f, s = _focal(), 0.5
    face_on = (f * 2 * s / (D - s)) ** 2  # front face of the cube fills the silhouette
    h_near, h_side = 2 * f * s / (D - s * math.sqrt(2)), 2 * f * s / D  # 45 degrees: near edge and side edges
    diag = (h_near + h_side) * f * s * math.sqrt(2) / D
    areas = alpha.sum((1, 2)).float()
    assert areas[0::2].tolist() == pytest.approx([face_on] * 4, rel=0.03)
    assert areas[1::2].tolist() == pytest.approx([diag] * 4, rel=0.03)
    # the visible face at the centre: +z (blue) from azimuth 0, +x (red) 90, -z (yellow) 180, -x (cyan) 270
    c = SIZE // 2
    centre = img[0::2, :, c, c]
    assert centre.tolist() == [[0, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert (img[0, :, 0, 0] == 1).all() and not alpha[0, 0, 0]  # white background


def test_perspective_correct_vertex_colours_and_shading():
    # a square facing the camera with a left-right colour ramp: at the centre column the colour is the mean
    verts = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cols = torch.tensor([[0.0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 0]])
    cam = R.orbit_cameras(1, elevation=0, radius=4.0, fov=FOV, size=64)[0]
    img, alpha = R.rasterize_mesh(verts, faces, cols, cam, shading=False)
    row = img[0, 32]
    assert row[alpha[32]].diff().ge(-1e-6).all()  # monotone ramp left -> right
    assert row[31:33].mean().item() == pytest.approx(0.5, abs=0.03)
    shaded, _ = R.rasterize_mesh(verts, faces, torch.ones(4, 3), cam, shading=True, ambient=0.35)
    assert shaded[0, 32, 32].item() == pytest.approx(1.0, abs=0.01)  # facing the light
    assert shaded[0, 32, alpha[32].nonzero()[0, 0]].item() < 1.0  # off-axis pixels are darker


class Coverage(Reward):
    """Fraction of non-background pixels of each view (a view-dependent image score)."""

    name = "coverage"
    input_format = "tensor"

    def __init__(self):
        self.seen_prompts = []

    def score(self, images, prompts, metadata):
        self.seen_prompts += prompts
        return RewardOutput((images < 0.999).any(1).float().mean((1, 2)))


def test_multiview_reward_mean_and_consistency():
    cov = Coverage()
    r = rewards.load("multiview3d", image_reward=cov, n_views=8, elevation=0, radius=D, fov=FOV, resolution=64)
    out = r([R.uv_sphere(0.5), R.cube_mesh(0.5), R.sphere_points(0.5, 5000)], ["a ball", "a box", "dots"])
    assert out.scores.shape == (3,) and out.scores.dtype == torch.float32
    assert out.scores.tolist() == pytest.approx(out.details["view_mean"].tolist())
    std = out.details["view_std"]
    assert std[0] < 1e-3 and std[2] < 2e-3  # a sphere looks the same from everywhere
    assert std[1] > 0.01  # a cube does not (face-on vs 45 degrees)
    vs = out.details["view_scores"]
    assert len(vs) == 3 and vs[1].shape == (8,) and vs[1][1] > vs[1][0]
    assert cov.seen_prompts == ["a ball"] * 8 + ["a box"] * 8 + ["dots"] * 8
    r2 = rewards.load("multiview3d", image_reward=cov, n_views=8, elevation=0, resolution=64, std_weight=1.0,
                      consistency_reward=cov, consistency_weight=0.5)
    out2 = r2([R.cube_mesh(0.5)], ["a box"])
    d = out2.details
    assert out2.scores.item() == pytest.approx((d["view_mean"] - d["view_std"] + 0.5 * d["consistency"]).item())


def test_multiview_with_registered_reward_and_bad_inputs():
    r = rewards.load("multiview3d", image_reward="jpeg_incompressibility", n_views=2, resolution=32)
    out = r([{"points": torch.rand(500, 3) - 0.5, "colors": torch.rand(500, 3)}], ["noise"])
    assert out.scores.item() > 0
    with pytest.raises(ValueError, match="verts"):
        r([torch.zeros(3, 8, 8)], ["x"])
    with pytest.raises(ValueError, match="shape"):
        r([{"points": torch.zeros(5, 2)}], ["x"])
    with pytest.raises(ValueError, match="prompts"):
        r([R.cube_mesh()], ["a", "b"])
    with pytest.raises(ValueError, match="unknown reward"):
        rewards.load("multiview3d", image_reward="nope")
    with pytest.raises(ValueError, match="elevation"):
        R.orbit_cameras(2, elevation=90)
