"""Full-range BlazeFace detector (MediaPipe Tasks FaceDetector).

The Face Landmarker's built-in detector is short-range and misses two-shots and small faces
(measured: no face in a two-shot of 256-px faces, none ~100 px wide at 720p), so faces are found here and the landmarker only runs on crops around them.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

import numpy as np

from extract.faces.mptask import PerThread, TaskOwner

# MediaPipe's C++ logging is noisy (INFO lines for every graph); keep only errors.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines MediaPipe prints while loading models that are known to be harmless here.
_HARMLESS = ("Sparsity tensors may not yet be fully supported", "INFO:", "Logging before InitGoogle",
             "inference_feedback_manager", "face_landmarker_graph.cc", "not aligned according to LiteRt")


@contextmanager
def quiet_stderr():
    """Capture fd 2 (C++ logs bypass sys.stderr) and re-emit only lines that are not known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not any(h in line for h in _HARMLESS):
                    print(line, file=sys.stderr)


def mp_image(frame: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame, dtype=np.uint8))


class FaceDetector(TaskOwner):
    """Full-range face detector on RGB frames. Use as a context manager (mediapipe 1.2.2 task objects
    print errors from __del__ unless closed)."""

    def __init__(self, model_path: str, min_confidence: float = 0.5):
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=float(min_confidence),
            min_suppression_threshold=0.3)
        with quiet_stderr():
            self._task = vision.FaceDetector.create_from_options(opts)
            self._task.detect(mp_image(np.zeros((64, 64, 3), np.uint8)))  # first call logs; keep it quiet
        self.min_confidence = float(min_confidence)
        self._seen: set = set()

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(k, 5) float32 rows x0, y0, x1, y1, score in frame pixels, highest score first."""
        if frame.shape not in self._seen:
            # the first frame of a new size reallocates the input tensor and logs about it
            self._seen.add(frame.shape)
            with quiet_stderr():
                res = self._task.detect(mp_image(frame))
        else:
            res = self._task.detect(mp_image(frame))
        rows = []
        for d in res.detections:
            b = d.bounding_box
            score = d.categories[0].score if d.categories else 0.0
            rows.append((b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height, score))
        out = np.asarray(rows, np.float32).reshape(-1, 5)
        return out[np.argsort(-out[:, 4])] if len(out) else out



_detectors = PerThread()


def get_detector(model_path: str, min_confidence: float = 0.5) -> FaceDetector:
    """One detector per thread and setting (loading costs far more than a frame; MediaPipe task
    objects are not safe to share between threads, so a thread-pool runner gets one per thread)."""
    return _detectors.get((str(model_path), float(min_confidence)),
                          lambda: FaceDetector(model_path, min_confidence))


def close_all() -> None:
    _detectors.close_all()
