"""Face Landmarker on a crop around each tracked face, mapped back to frame coordinates.

The landmarker's own detector is short-range: it finds a face that fills about half of its 256² input
but not a small face in a wide frame. So each face box (from the full-range detector or the previous
frame's landmarks) is cut out at `crop_scale` × its size, resized to `crop_px`², and the 478 landmarks
are mapped back with the inverse of that similarity transform.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from extract.faces.mptask import PerThread, TaskOwner

from extract.faces import BLENDSHAPE_NAMES
from extract.faces.detect import mp_image, quiet_stderr


@dataclass
class FaceResult:
    landmarks: np.ndarray    # (478, 3) float32: x, y in frame px, z in the same px scale (relative)
    blendshapes: np.ndarray  # (52,) float32 in BLENDSHAPE_NAMES order
    transform: np.ndarray    # (4, 4) float32 facial transformation (rotation valid; translation crop-relative)
    box: np.ndarray          # (4,) float32 landmark bounding box x0, y0, x1, y1 in frame px
    sharpness: float         # variance of the Laplacian over the face part of the gray crop


def square_from_box(box) -> tuple[float, float, float]:
    """(cx, cy, side) of the square around a box: side = the box's longer side."""
    x0, y0, x1, y1 = [float(v) for v in box[:4]]
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, float, float, float]:
    """Resample the square (cx, cy, side) of `frame` to out×out (zero border outside the frame).
    Returns the crop and (x0, y0, side) to map crop coordinates back: frame = x0 + u * side."""
    side = max(float(side), 1.0)
    k = out / side
    x0, y0 = cx - side / 2, cy - side / 2
    M = np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]], np.float64)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(frame, M, (out, out), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    return crop, x0, y0, side


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian on the centre half of the crop (the face, not the background)."""
    h, w = crop.shape[:2]
    c = crop[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


class CropLandmarker(TaskOwner):
    """Face Landmarker (IMAGE mode) applied to face crops. Use as a context manager."""

    def __init__(self, model_path: str, crop_scale: float = 2.0, crop_px: int = 256, min_conf: float = 0.5):
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            # two, so that when a neighbour's face enters the crop we can take the centred one
            num_faces=2,
            min_face_detection_confidence=min_conf,
            min_face_presence_confidence=min_conf,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True)
        with quiet_stderr():
            self._task = vision.FaceLandmarker.create_from_options(opts)
            # the first inference initialises the graph and logs; do it here, quietly
            self._task.detect(mp_image(np.zeros((crop_px, crop_px, 3), np.uint8)))
        self.crop_scale = float(crop_scale)
        self.crop_px = int(crop_px)

    def detect_crop(self, crop: np.ndarray):
        """Raw result on an already cut crop (for benchmarks: the landmarker alone)."""
        return self._task.detect(mp_image(crop))

    def run(self, frame: np.ndarray, box) -> FaceResult | None:
        """Landmarks of the face in `box` (x0, y0, x1, y1 frame px), or None when there is none."""
        cx, cy, s = square_from_box(box)
        crop, x0, y0, side = crop_square(frame, cx, cy, s * self.crop_scale, self.crop_px)
        res = self._task.detect(mp_image(crop))
        if not res.face_landmarks:
            return None
        # the face nearest the crop centre is the one we were asked about
        best, best_d = 0, np.inf
        for i, lms in enumerate(res.face_landmarks if len(res.face_landmarks) > 1 else ()):
            mx = np.mean([p.x for p in lms]) - 0.5
            my = np.mean([p.y for p in lms]) - 0.5
            if mx * mx + my * my < best_d:
                best, best_d = i, mx * mx + my * my
        lm = np.array([(p.x, p.y, p.z) for p in res.face_landmarks[best]], np.float32)
        lm[:, 0] = x0 + lm[:, 0] * side
        lm[:, 1] = y0 + lm[:, 1] * side
        lm[:, 2] = lm[:, 2] * side
        if res.face_blendshapes and len(res.face_blendshapes) > best:
            bs = np.array([c.score for c in res.face_blendshapes[best]], np.float32)
        else:
            bs = np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32)
        if res.facial_transformation_matrixes and len(res.facial_transformation_matrixes) > best:
            tf = np.asarray(res.facial_transformation_matrixes[best], np.float32).reshape(4, 4)
        else:
            tf = np.full((4, 4), np.nan, np.float32)
        box_out = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float32)
        return FaceResult(lm, bs, tf, box_out, sharpness(crop))



_landmarkers = PerThread()


def get_landmarker(model_path: str, crop_scale: float = 2.0, crop_px: int = 256) -> CropLandmarker:
    """One landmarker per thread and setting (module-level lazy singletons; task objects are not
    shared between threads)."""
    return _landmarkers.get((str(model_path), float(crop_scale), int(crop_px)),
                            lambda: CropLandmarker(model_path, crop_scale, crop_px))


def close_all() -> None:
    _landmarkers.close_all()
