"""The Face Landmarker's models run directly with LiteRT, on a face region we choose.

face_landmarker.task is a zip of three TFLite models and the geometry metadata. MediaPipe's graph
around them costs about as much CPU again as the landmark model itself (image conversion, a
short-range detector on every crop in IMAGE mode, a dispatch thread, result objects). The tracker
already knows where each face is, so here the landmark model gets its region straight from the
previous frame's landmarks, exactly as MediaPipe's own tracking computes it
(face_landmarks_detector_graph.cc): the landmarks' bounding box, rotated so that the line from
landmark 33 to 263 (the outer eye corners) is level, scaled 1.5× and made square on its longer side.
A new face (a detection box, no landmarks yet) is run twice: first on a square around the box, then
on the region from those first landmarks.

Preprocessing as MediaPipe's ImagePreprocessingGraph on the CPU: the rotated square warped to the
model's 256×256 input, bilinear, border replicated, RGB scaled to [0, 1]. Outputs as its calculators:
478 × (x, y, z) in input pixels (z in the same scale as x), a face-presence logit (sigmoid ≥
`min_conf`, else no face), landmarks projected back through the region. Blendshapes: the 146-landmark
subset of face_blendshapes_graph.cc, as (x, y) pixels of the image, into the blendshape model.
Head pose: extract/faces/geometry.py.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass

import cv2
import numpy as np

from extract.faces.runtime import interpreter

LANDMARK_MODEL = "face_landmarks_detector.tflite"
BLENDSHAPE_MODEL = "face_blendshapes.tflite"
GEOMETRY_METADATA = "geometry_pipeline_metadata_landmarks.binarypb"
ROI_SCALE = 1.5                  # RectTransformationCalculator scale_x, scale_y
EYE_A, EYE_B = 33, 263           # rotation_vector_start / end keypoint

# face_blendshapes_graph.cc kLandmarksSubsetIdxs
BLENDSHAPE_SUBSET = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67,
    70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146,
    148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181,
    185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293,
    295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361,
    362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398,
    400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477])


@dataclass(frozen=True)
class Roi:
    """A square face region: centre (cx, cy) and side in frame pixels (MediaPipe's convention: a
    normalised coordinate times the image size, used as an OpenCV pixel coordinate), rotated by
    `angle` radians (clockwise on screen, y down)."""
    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """(n, 2) points in [0, 1]² of the region → frame pixels."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        d = (uv - 0.5) * self.side
        return np.stack([self.cx + c * d[:, 0] - s * d[:, 1], self.cy + s * d[:, 0] + c * d[:, 1]], 1)


def roi_from_landmarks(lm: np.ndarray) -> Roi:
    """MediaPipe's region for the next frame from this frame's landmarks (frame px)."""
    x0, y0 = lm[:, 0].min(), lm[:, 1].min()
    x1, y1 = lm[:, 0].max(), lm[:, 1].max()
    a, b = lm[EYE_A], lm[EYE_B]
    angle = -np.arctan2(-(b[1] - a[1]), b[0] - a[0])
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0), float(angle))


def roi_from_box(box, scale: float) -> Roi:
    """An upright square of `scale` × the box's longer side around its centre."""
    x0, y0, x1, y1 = [float(v) for v in box[:4]]
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0, 1.0))


class FaceMeshNet:
    """The landmark, blendshape and geometry parts of one face_landmarker.task."""

    def __init__(self, task_path: str, min_conf: float = 0.5):
        from extract.faces.geometry import HeadPose

        with zipfile.ZipFile(task_path) as z:
            names = set(z.namelist())
            missing = {LANDMARK_MODEL, BLENDSHAPE_MODEL, GEOMETRY_METADATA} - names
            if missing:
                raise ValueError(f"{task_path}: not a face_landmarker.task (no {', '.join(sorted(missing))})")
            lm_model, bs_model, geo = (z.read(n) for n in (LANDMARK_MODEL, BLENDSHAPE_MODEL, GEOMETRY_METADATA))
        self.min_conf = float(min_conf)
        self._lm = interpreter(lm_model)
        inp = self._lm.get_input_details()[0]
        self._lm_in = inp["index"]
        self.size = int(inp["shape"][1])
        outs = {tuple(d["shape"]): d["index"] for d in self._lm.get_output_details()}
        self._lm_points = next(i for s, i in outs.items() if s[-1] == 478 * 3)
        self._lm_presence = next(i for s, i in outs.items() if len(s) == 4 and s[-1] == 1)
        self._bs = interpreter(bs_model)
        self._bs_in = self._bs.get_input_details()[0]["index"]
        self._bs_out = self._bs.get_output_details()[0]["index"]
        self.pose = HeadPose(geo)

    def warp(self, frame: np.ndarray, roi: Roi) -> np.ndarray:
        """The region as the model's input image (size², uint8 RGB)."""
        n = self.size
        k = roi.side / n
        c, s = np.cos(roi.angle), np.sin(roi.angle)
        # MediaPipe maps the region's corners onto the input's corners (0 and n, no half-pixel shift)
        M = np.array([[k * c, -k * s, roi.cx - (c - s) * roi.side / 2],
                      [k * s, k * c, roi.cy - (s + c) * roi.side / 2]], np.float64)
        return cv2.warpAffine(frame, M, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def landmarks(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float] | None:
        """(478, 3) landmarks in frame px (z in px, relative) and the presence score; None when the
        model sees no face in the region."""
        img = self.warp(frame, roi)
        self._lm.set_tensor(self._lm_in, (img.astype(np.float32) * (1 / 255.0))[None])
        self._lm.invoke()
        logit = float(np.clip(self._lm.get_tensor(self._lm_presence).reshape(-1)[0], -60.0, 60.0))
        presence = 1.0 / (1.0 + np.exp(-logit))
        if presence < self.min_conf:
            return None
        p = self._lm.get_tensor(self._lm_points).reshape(478, 3) / self.size
        out = np.empty((478, 3), np.float32)
        out[:, :2] = roi.to_frame(p[:, :2])
        out[:, 2] = p[:, 2] * roi.side
        return out, presence

    def blendshapes(self, lm_px: np.ndarray) -> np.ndarray:
        self._bs.set_tensor(self._bs_in, np.ascontiguousarray(lm_px[BLENDSHAPE_SUBSET, :2], np.float32)[None])
        self._bs.invoke()
        return self._bs.get_tensor(self._bs_out).reshape(-1).astype(np.float32)
