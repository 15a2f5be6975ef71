"""Object tracks across the frames of a clip: per-frame detections linked by position.

Each frame's detections (rewards.shapes.detect) are linked to the tracks alive so far by the assignment of least
total centre distance (exhaustive over permutations: a clip holds a handful of objects), a link only when the
distance is at most `max_link` pixels. A detection left unlinked starts a new track. A track may skip frames (an
object that flickers out and back keeps its track). Linking uses position only, so a track whose colour or shape
changes from frame to frame reveals an identity swap or a morph.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from rewards.shapes.detect import DetectedObject

MAX_OBJECTS = 6  # more detections than this in a frame: only the largest are linked (the clip fails anyway)


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    objects: list[DetectedObject] = field(default_factory=list)

    @property
    def centers(self) -> np.ndarray:
        """[n, 2] (x, y) centres in the frames where the object was seen."""
        return np.array([o.center for o in self.objects], dtype=np.float64).reshape(-1, 2)

    def identity(self) -> tuple[str, str]:
        """The (shape, colour) seen most often."""
        pairs = [(o.shape, o.color) for o in self.objects]
        return max(set(pairs), key=pairs.count)

    def identity_changes(self) -> int:
        """How many consecutive observations differ in shape or colour."""
        return sum((a.shape, a.color) != (b.shape, b.color) for a, b in zip(self.objects, self.objects[1:]))


def link(detections: list[list[DetectedObject]], max_link: float) -> list[Track]:
    """Tracks from per-frame detections (frame order)."""
    tracks: list[Track] = []
    for f, dets in enumerate(detections):
        dets = sorted(dets, key=lambda d: -d.area)[:MAX_OBJECTS]
        alive = tracks[:MAX_OBJECTS]
        best, best_cost = [], float("inf")
        k = min(len(alive), len(dets))
        for ti in itertools.permutations(range(len(alive)), k):
            for di in itertools.combinations(range(len(dets)), k):
                pairs = [(t, d) for t, d in zip(ti, di)
                         if np.hypot(*np.subtract(alive[t].objects[-1].center, dets[d].center)) <= max_link]
                # prefer more links, then less distance
                cost = sum(np.hypot(*np.subtract(alive[t].objects[-1].center, dets[d].center)) for t, d in pairs)
                cost -= 1e6 * len(pairs)
                if cost < best_cost:
                    best, best_cost = pairs, cost
        used = set()
        for t, d in best:
            alive[t].frames.append(f)
            alive[t].objects.append(dets[d])
            used.add(d)
        tracks += [Track([f], [d]) for i, d in enumerate(dets) if i not in used]
    return tracks
