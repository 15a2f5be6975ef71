"""Exact scoring of a clip against a moving-shapes spec: detections -> tracks -> six checks.

Pixel thresholds are for 32-pixel frames and scale with the frame side. The checks, each in [0, 1]:
  appearance  mean over frames of the shapes world's per-image partial credit for the objects (count, shape,
              colour; closed world: an extra object costs); strict needs every frame strict
  count       fraction of frames with exactly the prompt's number of objects (flicker, popping objects)
  identity    per prompt object, 1 - (shape/colour changes along its track) / (frames - 1), mean over objects
              (an identity swap or a morph); strict needs 1
  motion      the prompt's motion, from the object's first to last observed centre:
                direction  travel along the axis >= MIN_TRAVEL and off-axis drift <= MAX_DRIFT
                still      displacement <= STILL_TOL
                apart / together  the left object moves left / right and the right one right / left by
                           >= MIN_EACH each, the centre distance grows / shrinks by >= MIN_GAP_CHANGE, vertical
                           drift <= MAX_DRIFT
  speed       fraction of prompt objects whose mean speed (pixels per frame) lies in the motion's band SPEED
  smooth      fraction of prompt objects seen in every frame whose per-frame steps deviate from their mean step by
              <= MAX_JERK (no jumps, no stutter)
Prompt objects are matched to the tracks whose observations most often have their shape (and colour, when given).
An object with no matching track scores 0 on identity, motion, speed and smooth.
strict (0/1): all checks pass. partial: their mean.
"""

from __future__ import annotations

import itertools

import numpy as np

from rewards.motion.track import Track, link
from rewards.shapes.detect import DetectedObject
from rewards.shapes.score import score_objects

REF = 32.0  # the thresholds below are in pixels of a REF-pixel frame
MAX_LINK = 8.0
MIN_TRAVEL, MAX_DRIFT, STILL_TOL = 5.0, 4.0, 2.0
MIN_EACH, MIN_GAP_CHANGE = 2.0, 5.0
SPEED = {"direction": (1.0, 3.0), "still": (0.0, 0.5), "two_motion": (0.3, 2.0)}
MAX_JERK = 1.5
CHECKS = ("appearance", "count", "identity", "motion", "speed", "smooth")
_AXIS = {"right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}


def _match(tracks: list[Track], include: list[dict]) -> list[Track | None]:
    """The distinct tracks that best match each prompt object (None where nothing matches)."""
    def fit(t: Track, o: dict) -> int:
        return sum(d.shape == o["class"] and (not o.get("color") or d.color == o["color"]) for d in t.objects)

    best, best_fit = [None] * len(include), -1
    for perm in itertools.permutations(range(len(tracks)), min(len(tracks), len(include))):
        fits = [fit(tracks[t], o) for t, o in zip(perm, include)]
        if sum(fits) > best_fit:
            best_fit = sum(fits)
            best = [tracks[t] if f > 0 else None for t, f in zip(perm, fits)]
    return best + [None] * (len(include) - len(best))


def _motion_ok(spec: dict, tracks: list[Track | None], s: float) -> float:
    if any(t is None for t in tracks):
        return 0.0
    disp = [t.centers[-1] - t.centers[0] for t in tracks]
    motion = spec["motion"]
    if motion == "still":
        return float(np.hypot(*disp[0]) <= STILL_TOL * s)
    if motion in _AXIS:
        axis, sign = _AXIS[motion]
        return float(sign * disp[0][axis] >= MIN_TRAVEL * s and abs(disp[0][1 - axis]) <= MAX_DRIFT * s)
    left, right = sorted(range(2), key=lambda i: tracks[i].centers[0][0])
    sign = -1 if motion == "apart" else 1  # the left object's x direction
    gap0 = abs(tracks[right].centers[0][0] - tracks[left].centers[0][0])
    gap1 = abs(tracks[right].centers[-1][0] - tracks[left].centers[-1][0])
    ok = (sign * disp[left][0] >= MIN_EACH * s and -sign * disp[right][0] >= MIN_EACH * s
          and -sign * (gap1 - gap0) >= MIN_GAP_CHANGE * s and max(abs(d[1]) for d in disp) <= MAX_DRIFT * s)
    return float(ok)


def _steps(t: Track) -> np.ndarray:
    """Per-frame displacement vectors [n - 1, 2] (divided by the frame gap where frames were skipped)."""
    c, f = t.centers, np.array(t.frames, dtype=np.float64)
    return np.diff(c, axis=0) / np.diff(f)[:, None] if len(f) > 1 else np.zeros((0, 2))


def score_clip(detections: list[list[DetectedObject]], spec: dict, side: int) -> dict:
    """{"strict", "partial", "checks": {name: value}} of one clip's per-frame detections (frame side `side` px)."""
    s = side / REF
    n_frames, inc = len(detections), spec["include"]
    per_frame = [score_objects(d, spec) for d in detections]
    tracks = _match(link(detections, MAX_LINK * s), inc)
    lo, hi = SPEED[spec["tag"]]
    speed, smooth, identity = [], [], []
    for t in tracks:
        if t is None:
            speed.append(0.0), smooth.append(0.0), identity.append(0.0)
            continue
        st = _steps(t)
        v = float(np.linalg.norm(st, axis=1).mean()) if len(st) else 0.0
        speed.append(float(lo * s <= v <= hi * s))
        full = len(t.frames) == n_frames
        smooth.append(float(full and (np.linalg.norm(st - st.mean(0), axis=1).max() if len(st) else 0.0)
                            <= MAX_JERK * s))
        identity.append(max(0.0, 1.0 - t.identity_changes() / max(n_frames - 1, 1)) if full else
                        max(0.0, (len(t.frames) - 1 - t.identity_changes()) / max(n_frames - 1, 1)))
    checks = {
        "appearance": float(np.mean([r["partial"] for r in per_frame])),
        "count": float(np.mean([len(d) == len(inc) for d in detections])),
        "identity": float(np.mean(identity)),
        "motion": _motion_ok(spec, tracks, s),
        "speed": float(np.mean(speed)),
        "smooth": float(np.mean(smooth)),
    }
    strict = all(r["strict"] for r in per_frame) and all(checks[k] == 1.0 for k in CHECKS[1:])
    return {"strict": float(strict), "partial": float(np.mean([checks[k] for k in CHECKS])), "checks": checks}
