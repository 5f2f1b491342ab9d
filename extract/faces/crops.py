"""DECA/EMOCA-style face crops: square 1.1·(w+h)/2 × 1.25 around the landmark box, resampled to 224².

Shared with the EMOCA backend (extract/expressions/), which must see the crops its network was trained on,
so the warp is EMOCA's own: the square's side is truncated to an integer (`size = int(old_size * scale)`)
and its corners map onto pixel centres 0 and 223 (skimage `estimate_transform('similarity', src, DST_PTS)`
with `DST_PTS = [[0, 0], [0, 223], [223, 0]]`, bilinear `warp`, black outside).
"""
from __future__ import annotations

import numpy as np

# MediaPipe mesh indices approximating the 68 iBUG points DECA's crops were defined on (jaw line,
# brows, nose, eyes, mouth; only the extremes matter for the box). The box of the
# 68 points runs from the brows to the chin; the full mesh's box reaches the hairline, so using all 478
# points would shift and enlarge the crop.
MESH_TO_68 = np.array([
    127, 234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323,   # jaw line
    454, 356,                                                                            # (temples)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,                                        # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,                                                  # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,                            # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,  # mouth
])


DECA_SCALE = 1.25   # DECA/EMOCA: the square is 1.25 × 1.1 × mean(w, h) of the landmark box
DECA_SIZE = 224     # their encoders' input side


def deca_crop_box(landmarks_xy: np.ndarray, scale: float = DECA_SCALE) -> tuple[float, float, float]:
    """(cx, cy, size) of DECA's crop square for one face. `landmarks_xy` is (478, ≥2) MediaPipe mesh
    points (the 68-point subset is used) or any (K, ≥2) set of keypoints."""
    p = np.asarray(landmarks_xy, np.float64)
    if p.shape[0] == 478:
        p = p[MESH_TO_68]
    x0, y0 = np.nanmin(p[:, 0]), np.nanmin(p[:, 1])
    x1, y1 = np.nanmax(p[:, 0]), np.nanmax(p[:, 1])
    old = (x1 - x0 + y1 - y0) / 2 * 1.1
    return float((x0 + x1) / 2), float((y0 + y1) / 2), float(old * scale)


def track_crop_boxes(landmarks: np.ndarray, valid: np.ndarray, scale: float = DECA_SCALE,
                     smooth_sigma: float = 0.0) -> np.ndarray:
    """(N, 3) crop squares (cx, cy, side) of a face track, in the track's pixels: one per frame from its
    landmarks, smoothed over time like the track's boxes. The one crop geometry of the faces stage's
    stored crops and of the expressions stage's own decode."""
    from extract.faces.tracks import smooth_boxes

    lm = np.asarray(landmarks, np.float32)[..., :2]
    boxes = np.array([deca_crop_box(x, scale) for x in lm], np.float64).reshape(len(lm), 3)
    if smooth_sigma > 0 and len(boxes):
        boxes = smooth_boxes(boxes, np.asarray(valid, bool) & np.isfinite(boxes).all(axis=1), smooth_sigma)
    return np.asarray(boxes, np.float64)


def deca_matrix(cx: float, cy: float, size: float, out: int = 224) -> np.ndarray:
    """2x3 affine frame px → crop px of EMOCA's crop: side int(size), corners onto 0 and out - 1."""
    side = max(int(size), 1)
    k = (out - 1) / side
    x0, y0 = cx - side / 2, cy - side / 2
    return np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]], np.float64)


def crop_frames(frames: np.ndarray, boxes: np.ndarray, out: int = 224) -> np.ndarray:
    """(N, out, out, 3) uint8 crops of `frames` (N, H, W, 3) at `boxes` (N, 3) = (cx, cy, size) in
    those frames' pixels, warped as EMOCA does (deca_matrix, bilinear); outside the frame is black."""
    import cv2

    boxes = np.asarray(boxes, np.float64)
    res = np.empty((len(frames), out, out, 3), np.uint8)
    for i, (f, (cx, cy, s)) in enumerate(zip(frames, boxes)):
        res[i] = cv2.warpAffine(f, deca_matrix(cx, cy, s, out), (out, out), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
    return res
