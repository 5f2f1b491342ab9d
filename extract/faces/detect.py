"""Full-range BlazeFace detector (MediaPipe's FaceDetector, run directly with LiteRT).

The Face Landmarker's built-in detector is short-range and misses two-shots and small faces
(measured: no face in a two-shot of 256-px faces, none ~100 px wide at 720p), so faces are found here and the landmarker only runs on regions around them.
"""
from __future__ import annotations

import numpy as np

from extract.faces.mptask import PerThread, TaskOwner
from extract.faces.runtime import interpreter

# MediaPipe's full-range face detector (face_detector_graph.cc, the 192x192 model): SSD anchors on
# one 48x48 grid (stride 4, fixed size 1), 16 values per anchor (box centre, size, 6 keypoints) in
# input pixels, a score logit clipped to ±100; weighted non-maximum suppression at IoU 0.3.
ANCHOR_GRID, SCORE_CLIP, NMS_IOU = 48, 100.0, 0.3


class FaceDetector(TaskOwner):
    """Full-range face detector on RGB frames: MediaPipe's FaceDetector task recomputed around a
    direct LiteRT call (its graph's preprocessing, decoding and suppression, below), on the calling
    thread. tests/test_direct_models.py holds it to MediaPipe's own task on real photographs."""

    def __init__(self, model_path: str, min_confidence: float = 0.5):
        with open(model_path, "rb") as f:
            self._it = interpreter(f.read())
        inp = self._it.get_input_details()[0]
        self._in, self.size = inp["index"], int(inp["shape"][1])
        outs = {int(d["shape"][-1]): d["index"] for d in self._it.get_output_details()}
        if set(outs) != {16, 1} or self.size != 192:
            raise ValueError(f"{model_path}: not MediaPipe's full-range face detector (192x192 in, 16 + 1 out)")
        self._boxes, self._scores = outs[16], outs[1]
        g = (np.arange(ANCHOR_GRID) + 0.5) / ANCHOR_GRID
        self._anchors = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)    # (x, y), row by row
        self.min_confidence = float(min_confidence)

    def close(self) -> None:
        self._it = None

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(k, 5) float32 rows x0, y0, x1, y1, score in frame pixels, highest score first."""
        import cv2

        h, w = frame.shape[:2]
        n, side = self.size, float(max(w, h))
        # letterbox: the frame's centred square of its longer side onto the input, zero border,
        # bilinear (MediaPipe maps the region's corners onto the input's corners)
        k = side / n
        ox, oy = (w - side) / 2, (h - side) / 2
        M = np.array([[k, 0.0, ox], [0.0, k, oy]])
        img = cv2.warpAffine(frame, M, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT)
        self._it.set_tensor(self._in, (img.astype(np.float32) * (2 / 255.0) - 1.0)[None])
        self._it.invoke()
        logit = np.clip(self._it.get_tensor(self._scores).reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
        score = 1.0 / (1.0 + np.exp(-logit))
        keep = np.flatnonzero(score >= self.min_confidence)
        if not len(keep):
            return np.zeros((0, 5), np.float32)
        raw = self._it.get_tensor(self._boxes).reshape(-1, 16)[keep, :4] / n
        c = raw[:, :2] + self._anchors[keep]
        boxes = np.concatenate([c - raw[:, 2:4] / 2, c + raw[:, 2:4] / 2], 1)
        rows = _weighted_nms(boxes, score[keep], NMS_IOU)
        rows[:, [0, 2]] = rows[:, [0, 2]] * side + ox
        rows[:, [1, 3]] = rows[:, [1, 3]] * side + oy
        return rows.astype(np.float32)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_min: float) -> np.ndarray:
    """MediaPipe's WEIGHTED suppression: the best remaining box absorbs every remaining box that
    overlaps it by IoU > iou_min, its corners becoming their score-weighted mean; its score stays."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    left = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        b = boxes[i]
        iw = np.clip(np.minimum(boxes[:, 2], b[2]) - np.maximum(boxes[:, 0], b[0]), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], b[3]) - np.maximum(boxes[:, 1], b[1]), 0, None)
        inter = iw * ih
        group = left & (inter / np.maximum(area + area[i] - inter, 1e-12) > iou_min)
        group[i] = True
        wts = scores[group]
        out.append((*(wts @ boxes[group] / wts.sum()), scores[i]))
        left &= ~group
    return np.asarray(out, np.float64).reshape(-1, 5)


_detectors = PerThread()


def get_detector(model_path: str, min_confidence: float = 0.5) -> FaceDetector:
    """One detector per thread and setting (loading costs far more than a frame; MediaPipe task
    objects are not safe to share between threads, so a thread-pool runner gets one per thread)."""
    return _detectors.get((str(model_path), float(min_confidence)),
                          lambda: FaceDetector(model_path, min_confidence))


def close_all() -> None:
    _detectors.close_all()
