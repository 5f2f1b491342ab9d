"""Face stage settings (extract/faces/)."""
from __future__ import annotations

from typing import Literal

from pipeline.config._base import F, Section


class FacesConfig(Section):
    analysis_fps: float = F(25.0, "frames analysed per second: EmoAva sources are ~24 fps")
    max_side: int = F(640, "longest side of analysed frames: full-range BlazeFace works at 640x360")
    policy: Literal["strict", "dominant", "speaker"] = F(
        "dominant", "which face: dominant keeps one clear main face and rejects real ambiguity")
    min_face_px: int = F(40, "ignore faces smaller than this (px at analysis size): detector limit")
