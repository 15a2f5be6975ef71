"""Object detector of the shapes world: colour segmentation, connected components, shape classification.

Works on one RGB float image [H, W, 3] in [0, 1] of any resolution (thresholds scale with the image side).
Pixels whose chroma (max - min channel) exceeds CHROMA_MIN are foreground (the background is white); isolated
speckle is dropped and pinholes are filled; each foreground pixel gets the palette colour of nearest hue.
8-connected foreground components become objects;
a component whose pixels are not dominated by one colour (two touching objects) is split by colour. Each
object's shape is the template (inscribed circle, full square, apex-up triangle, all fitted to the object's
bounding box) with the highest IoU against its mask; a poor fit or a stretched box gives class "unknown".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rewards.shapes.world import COLORS, SHAPES

CHROMA_MIN = 0.3  # palette chroma is ~0.75; half-covered anti-aliased edge pixels are ~0.37
MIN_AREA_FRAC = 0.012  # smaller components are speckle (the smallest rendered object covers ~0.03 of the image)
DOMINANT_FRAC = 0.75  # a component is one object when its main colour covers this share of its pixels
MIN_IOU = 0.72  # best template IoU below this -> "unknown"
MAX_ASPECT = 1.5
_EIGHT = np.ones((3, 3), dtype=bool)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees [0, 360) of RGB values in [0, 1] (any leading shape)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return (h * 60.0) % 360.0


COLOR_NAMES = tuple(COLORS)
_PALETTE_HUES = _hue(np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float64) / 255.0)


@dataclass
class DetectedObject:
    shape: str  # one of SHAPES or "unknown"
    color: str
    area: int  # pixels
    center: tuple[float, float]  # (x, y) pixel centroid
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive-exclusive)
    iou: float  # template fit

    def as_dict(self) -> dict:
        return {"shape": self.shape, "color": self.color, "area": self.area,
                "center": [round(self.center[0], 2), round(self.center[1], 2)], "box": list(self.box),
                "iou": round(self.iou, 3)}


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a boolean mask, each as an [n, 2] array of (y, x) in raster order; components are
    ordered by their first pixel in raster order."""
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    pts = np.argwhere(lab)  # raster order
    ids = lab[pts[:, 0], pts[:, 1]]
    order = np.argsort(ids, kind="stable")
    return np.split(pts[order], np.cumsum(np.bincount(ids, minlength=n + 1)[1:])[:-1])


def _despeckle(mask: np.ndarray) -> np.ndarray:
    """Drop foreground pixels with <= 1 foreground neighbour (of 8) and fill background pixels with >= 6."""
    p = np.pad(mask.astype(np.int32), 1)
    h, w = mask.shape
    nb = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) - mask
    return np.where(mask, nb >= 2, nb >= 6)


@functools.lru_cache(maxsize=4096)
def _templates(bh: int, bw: int) -> dict[str, np.ndarray]:
    """Shape masks fitted to a bh x bw box, sampled at pixel centres (2x2 supersampled, >= half covered)."""
    ys = (np.arange(bh * 2) + 0.5) / (bh * 2)
    xs = (np.arange(bw * 2) + 0.5) / (bw * 2)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    masks = {
        "circle": (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25,
        "square": np.ones_like(x, dtype=bool),
        "triangle": np.abs(x - 0.5) <= 0.5 * y,  # apex at top centre, base along the bottom
    }
    assert set(masks) == set(SHAPES), "a template per shape of the world"
    return {k: m.reshape(bh, 2, bw, 2).mean((1, 3)) >= 0.5 for k, m in masks.items()}


def classify_shape(pts: np.ndarray) -> tuple[str, float, tuple[int, int, int, int]]:
    y0, x0 = pts.min(0)
    y1, x1 = pts.max(0) + 1
    bh, bw = y1 - y0, x1 - x0
    m = np.zeros((bh, bw), dtype=bool)
    m[pts[:, 0] - y0, pts[:, 1] - x0] = True
    best, best_iou = "unknown", 0.0
    for name, t in _templates(bh, bw).items():
        iou = float((m & t).sum() / max((m | t).sum(), 1))
        if iou > best_iou:
            best, best_iou = name, iou
    if best_iou < MIN_IOU or max(bh, bw) > MAX_ASPECT * min(bh, bw):
        best = "unknown"
    return best, best_iou, (int(x0), int(y0), int(x1), int(y1))


def detect(image: np.ndarray) -> list[DetectedObject]:
    """Objects in one image: float [H, W, 3] in [0, 1] (or uint8, converted)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"detect expects an [H, W, 3] image, got shape {img.shape}")
    h, w, _ = img.shape
    chroma = img.max(-1) - img.min(-1)
    fg = _despeckle(chroma > CHROMA_MIN)
    d = np.abs(_hue(img)[..., None] - _PALETTE_HUES)
    label = np.argmin(np.minimum(d, 360.0 - d), axis=-1)
    min_area = max(3, int(round(MIN_AREA_FRAC * h * w)))
    objects = []
    for comp in _components(fg):
        if len(comp) < min_area:
            continue
        labs = label[comp[:, 0], comp[:, 1]]
        counts = np.bincount(labs, minlength=len(COLOR_NAMES))
        if counts.max() >= DOMINANT_FRAC * len(comp):
            parts = [(comp, int(counts.argmax()))]
        else:  # touching objects of different colours: split by colour
            parts = []
            for c in np.nonzero(counts)[0]:
                sub = np.zeros((h, w), dtype=bool)
                sel = comp[labs == c]
                sub[sel[:, 0], sel[:, 1]] = True
                parts += [(p, int(c)) for p in _components(sub)]
        for pts, c in parts:
            if len(pts) < min_area:
                continue
            shape, iou, box = classify_shape(pts)
            cy, cx = pts.mean(0) + 0.5
            objects.append(DetectedObject(shape, COLOR_NAMES[c], len(pts), (float(cx), float(cy)), box, iou))
    return objects

