"""Who a tracked face is, frame by frame: a cheap identity signature and the jump between signatures.

A track follows a face by its previous box, so nothing stops it from running from one person onto
another: a cut the shot detector misses (a cross-fade, two cuts within its minimum shot length) or
the crop landmarker hopping to a neighbour's face. The signature is

- appearance: the colour around 22 inner-face landmarks that speech, blinks and brow raises barely
  move (upper forehead, cheeks, below the eyes, nose; not the face border, which samples hair and
  background), in log RGB; its pattern relative to the face's own median colour
  (hair line, shading of the nose and cheeks) and the skin chroma (log R/G, log B/G), both
  unchanged by a global change of brightness or zoom;
- geometry: the 3-D shape of the rigid landmarks (eye corners, nose, forehead, temples, cheekbones)
  after removing position and scale; rotation is removed when two shapes are compared (Kabsch), so
  turning the head does not look like another person.

The tracker compares each frame's signature with the median signature of the same track some
frames earlier (so a dissolve of up to `lag` frames is seen whole) and splits the track where the
distance exceeds `faces.identity_max_jump`. Figures from real photographs in docs/faces.md.
"""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

# Points whose colour identifies the face and barely changes while it talks or blinks.
APPEARANCE_IDX = np.array([
    10, 9, 67, 297, 109, 338,                           # upper forehead, hair line, between the brows
    50, 280, 117, 346, 123, 352,                        # cheeks below the cheekbones
    230, 450, 118, 347,                                 # below the eyes
    4, 5, 195, 197, 6, 168,                             # nose bridge and tip
])
# Rigid points for the shape: eye corners, nose, forehead, temples, cheekbones (no brows, jaw, lips, lids).
GEOMETRY_IDX = np.array([33, 133, 362, 263, 1, 4, 6, 168, 197, 10, 151, 127, 356, 234, 454, 93, 323])
_OFFSETS = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
GEOMETRY_WEIGHT = 1.0   # the 3-D shape after alignment differs little between people (the landmarker
# regularises it) but a lot under strong expressions: it only breaks ties


def signature(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """1-D float32 identity signature of the face with (478, ≥2) `landmarks` (frame px) in `frame`."""
    xy = np.asarray(landmarks[:, :2], np.float32)
    lo, hi = xy.min(0), xy.max(0)
    r = 0.025 * float(max(hi - lo))          # patch half-size: 2.5% of the face
    pts = xy[APPEARANCE_IDX][:, None, :] + r * _OFFSETS[None]               # (K, 5, 2)
    mx = np.ascontiguousarray(pts[..., 0].reshape(-1, 1))
    my = np.ascontiguousarray(pts[..., 1].reshape(-1, 1))
    col = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    col = col.reshape(len(APPEARANCE_IDX), len(_OFFSETS), 3).astype(np.float32).mean(1)
    lg = np.log(col / 255.0 + 0.02)
    rel = lg - np.median(lg, axis=0)
    chroma = np.array([np.mean(lg[:, 0] - lg[:, 1]), np.mean(lg[:, 2] - lg[:, 1])], np.float32)
    # 3-D shape: the landmarker's z is in the same px scale as x, y, so head rotation is removed by
    # aligning the shapes when two signatures are compared (distance)
    g = np.asarray(landmarks[GEOMETRY_IDX, :3], np.float32)
    g = g - g.mean(0)
    g /= np.sqrt((g ** 2).sum(1).mean()) + 1e-6
    return np.concatenate([rel.ravel(), chroma, GEOMETRY_WEIGHT * g.ravel()]).astype(np.float32)


def _aligned_rms(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance of two centred (K, 3) shapes after the best rotation of b onto a (Kabsch)."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(np.mean(np.sum((b @ r - a) ** 2, axis=1))))


_N_APP = 3 * len(APPEARANCE_IDX)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Identity distance of two signatures: RMS difference of the appearance pattern and shape, plus
    the skin-chroma difference."""
    d = a - b
    app = float(np.sqrt(np.mean(d[:_N_APP] ** 2)))
    chroma = float(np.abs(d[_N_APP:_N_APP + 2]).sum())
    ga = a[_N_APP + 2:].reshape(-1, 3).astype(np.float64)
    gb = b[_N_APP + 2:].reshape(-1, 3).astype(np.float64)
    geo = _aligned_rms(ga, gb) / np.sqrt(3.0)     # per coordinate, as the appearance RMS
    return app + chroma + geo


class IdentityCheck:
    """Per-track history of signatures; `jump(sig)` = distance to the median of the signatures from
    `lag` to `lag + window` frames back (the whole history while it is shorter). The median is
    refreshed every `refresh` frames: the reference moves slowly, and this halves the check's cost."""

    def __init__(self, lag: int = 8, window: int = 12, refresh: int = 4):
        self.lag, self.window, self.refresh = int(lag), int(window), int(refresh)
        self.hist: deque = deque(maxlen=self.lag + self.window)
        self._ref: np.ndarray | None = None
        self._age = 0

    def jump(self, sig: np.ndarray) -> float:
        if len(self.hist) < 3:
            return 0.0
        if self._ref is None or self._age >= self.refresh:
            h = list(self.hist)
            self._ref = np.median(np.stack(h[:max(3, len(h) - self.lag)]), axis=0)
            self._age = 0
        return distance(sig, self._ref)

    def add(self, sig: np.ndarray) -> None:
        self.hist.append(sig)
        self._age += 1
