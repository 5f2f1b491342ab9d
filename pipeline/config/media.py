"""Media layer settings (pipeline/media.py)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class MediaConfig(Section):
    ffmpeg: str = F("", "ffmpeg binary; empty = ffmpeg on PATH, else the imageio-ffmpeg wheel's",
                    local_only=True)
    audio_rate: int = F(16000, "audio sample rate for speaker checks (Hz): speech models' usual rate")
    probe_timeout_s: float = F(60.0, "give up probing a file after this long (hung or huge inputs)")
    vfr_tolerance: float = F(0.02, "relative spread of frame durations beyond time-base rounding that marks a clip VFR")
    span_slack_s: float = F(0.5, "a span may overrun the media end by this much (caption rounding) before it is an error")
    decode_threads: int = F(1, "ffmpeg decoder threads per decode: 1 costs ~18% less CPU per frame than auto, and "
                               "the landmarker, not decoding, is the bottleneck; 0 = ffmpeg's choice")
    audio_langs: list[str] = F(["en", "eng"], "audio stream languages to prefer when no stream is marked default "
                                              "(ffmpeg's tags are ISO 639-2, e.g. eng; captions use 639-1, e.g. en)")
    audio_silence_db: float = F(-60.0, "an audio stream whose RMS over the span is below this (dBFS) counts as "
                                       "silent: with a second audio stream, read_audio then reads that one "
                                       "(a silent commentary/other-language track must not hide the speech)")
