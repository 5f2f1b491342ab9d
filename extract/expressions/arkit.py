"""arkit52: the 52 blendshape scores MediaPipe's Face Landmarker already produced in the face pass.

Nothing is recomputed: the codes are the track's `blendshapes` column, so this backend adds only a
file read to the face stage."""
from __future__ import annotations

import numpy as np

from extract.expressions.base import Backend, BackendOutput


class ArkitBackend(Backend):
    name = "arkit52"
    code_space = "arkit52"
    needs_crops = False

    def versions(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        try:
            mp = version("mediapipe")
        except PackageNotFoundError:
            mp = "unknown"
        return {"mediapipe": mp, "blendshape_model": "face_landmarker.task (float16 v1)"}

    def encode(self, track: dict[str, np.ndarray], crops: np.ndarray | None = None) -> BackendOutput:
        bs = np.asarray(track["blendshapes"], np.float32)
        if bs.ndim != 2 or bs.shape[1] != 52:
            raise ValueError(f"track 'blendshapes' has shape {bs.shape}, expected (N, 52)")
        valid = np.asarray(track["valid"], bool) & np.isfinite(bs).all(axis=1)
        codes = bs.copy()
        codes[~valid] = np.nan  # interpolated/missing face frames are not measurements
        return BackendOutput(codes, valid)
