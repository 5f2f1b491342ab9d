"""Where speech is: Silero VAD (the ONNX model bundled with faster-whisper) on 16 kHz mono samples."""
from __future__ import annotations

import numpy as np

RATE = 16000


def speech_regions(audio: np.ndarray, cfg, offset: float = 0.0) -> list[tuple[float, float]]:
    """[(start, end), ...] seconds (+ offset) of speech, unpadded: the VAD's own edges, which lag a real
    onset by ~0.1 s on the LibriVox clips (docs/speech.md), so callers pad what they cut."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(audio) < RATE // 10:
        return []
    opts = VadOptions(threshold=cfg.vad_threshold, min_silence_duration_ms=cfg.vad_min_silence_ms,
                      speech_pad_ms=0, min_speech_duration_ms=120)
    ts = get_speech_timestamps(np.ascontiguousarray(audio, np.float32), opts, sampling_rate=RATE)
    return [(offset + t["start"] / RATE, offset + t["end"] / RATE) for t in ts]


def speech_in(regions, start: float, end: float) -> list[tuple[float, float]]:
    """The regions clipped to [start, end]."""
    out = []
    for s, e in regions:
        s, e = max(s, start), min(e, end)
        if e > s:
            out.append((round(s, 3), round(e, 3)))
    return out


def speech_share(regions, start: float, end: float) -> float:
    """Share of [start, end] that is speech."""
    if end <= start:
        return 0.0
    return sum(e - s for s, e in speech_in(regions, start, end)) / (end - start)


__all__ = ["RATE", "speech_regions", "speech_in", "speech_share"]
