"""Media layer settings (pipeline/media.py)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class MediaConfig(Section):
    ffmpeg: str = F("", "ffmpeg binary; empty = ffmpeg on PATH, else the imageio-ffmpeg wheel's")
    audio_rate: int = F(16000, "audio sample rate for speaker checks (Hz): speech models' usual rate")
    probe_timeout_s: float = F(60.0, "give up probing a file after this long (hung or huge inputs)")
    vfr_tolerance: float = F(0.02, "relative spread of frame durations beyond time-base rounding that marks a clip VFR")
    span_slack_s: float = F(0.5, "a span may overrun the media end by this much (caption rounding) before it is an error")
    decode_threads: int = F(1, "ffmpeg decoder threads per decode: 1 costs ~18% less CPU per frame than auto, and "
                               "the landmarker, not decoding, is the bottleneck; 0 = ffmpeg's choice")
