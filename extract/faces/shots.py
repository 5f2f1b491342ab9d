"""Shot boundaries from the frames the face stage already decoded (no second decode).

Content difference as in PySceneDetect's ContentDetector: the mean absolute change of H, S and V
between consecutive frames (0-255 scale), on a small thumbnail so the cost is negligible next to the
landmarker. A cut needs the score over the threshold and the previous cut at least `min_len` frames back.
The first frame of a segment is compared with the frame before it (`prime`, from the stage's pre-roll),
so a cut on any frame of the segment, the first included, is found; no cut is assumed before the
segment, so `min_len` never hides a cut near its start.
"""
from __future__ import annotations

import cv2
import numpy as np

THUMB_W = 96  # thumbnail width: enough for a content score


def thumb_hsv(frame: np.ndarray) -> np.ndarray:
    # strided subsampling (not an area resize): ~20x cheaper, and a cut changes the whole picture
    # anyway, so aliasing does not matter for the score
    step = max(1, frame.shape[1] // THUMB_W)
    small = np.ascontiguousarray(frame[step // 2::step, step // 2::step])
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.int16)


def content_score(a_hsv: np.ndarray, b_hsv: np.ndarray) -> float:
    return float(np.abs(a_hsv - b_hsv).reshape(-1, 3).mean(axis=0).mean())


class ShotDetector:
    """Streaming cut detector: feed frames in order with update(); it returns (score, is_cut)."""

    def __init__(self, threshold: float = 27.0, min_len: int = 15):
        self.threshold = float(threshold)
        self.min_len = int(min_len)
        self._prev = None
        self._i = -1
        self._last_cut = -10 ** 9      # no cut before the segment: a cut on frame 1 counts
        self.cuts: list[int] = []       # frame indices that start a new shot
        self.scores: list[float] = []

    def prime(self, frame: np.ndarray) -> None:
        """Show the frame just before the segment (not counted): frame 0 is then scored against it."""
        self._prev = thumb_hsv(frame)

    def update(self, frame: np.ndarray) -> tuple[float, bool]:
        self._i += 1
        cur = thumb_hsv(frame)
        score = 0.0 if self._prev is None else content_score(self._prev, cur)
        self._prev = cur
        cut = score >= self.threshold and self._i - self._last_cut >= self.min_len
        if cut:
            self._last_cut = self._i
            self.cuts.append(self._i)
        self.scores.append(score)
        return score, cut
