"""arkit52: the 52 blendshape scores MediaPipe's Face Landmarker already produced in the face pass.

Nothing is recomputed: the codes are the track's `blendshapes` column, so this backend adds only a
file read to the face stage."""
from __future__ import annotations

import numpy as np

from extract.expressions.base import Backend, BackendOutput

# MediaPipe's output order (face_blendshapes_graph.cc, kBlendshapeNames): `_neutral`, then alphabetical.
_MEDIAPIPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)

try:  # the faces package owns the canonical list once it exists; ours must agree with it
    from extract.faces import BLENDSHAPE_NAMES as _FACES_NAMES  # type: ignore[attr-defined]

    if tuple(_FACES_NAMES) != _MEDIAPIPE_NAMES:
        raise ImportError("extract.faces.BLENDSHAPE_NAMES differs from MediaPipe's order")
    BLENDSHAPE_NAMES: tuple[str, ...] = tuple(_FACES_NAMES)
except ImportError:
    BLENDSHAPE_NAMES = _MEDIAPIPE_NAMES

assert len(BLENDSHAPE_NAMES) == 52
JAW_NAMES = ("jawForward", "jawLeft", "jawOpen", "jawRight")


class ArkitBackend(Backend):
    name = "arkit52"
    code_space = "arkit52"
    needs_crops = False

    @property
    def dims(self) -> list[str]:
        return list(BLENDSHAPE_NAMES)

    @property
    def jaw_dims(self) -> list[int]:
        return [BLENDSHAPE_NAMES.index(n) for n in JAW_NAMES]

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
