"""Whisper through faster-whisper (CTranslate2): samples -> words with times and probabilities.

One model per process and setting (loading base takes ~0.3 s, large-v3 ~5 s): int8 weights with
`speech.cpu_threads` threads on CPU (one per worker process scales better than one process with many
threads), float16 on CUDA. The batched pipeline (default) cuts the audio at Silero VAD's speech regions
and decodes `speech.batch_size` windows at once, as WhisperX does; the sequential decoder (batched: false)
hears the same VAD-filtered audio. Either way silence and music between utterances cost nothing and
cannot be hallucinated into words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.stage import check_deadline

RATE = 16000
Word = tuple  # (word, start, end, probability), seconds on the media timeline


@dataclass
class Heard:
    words: list = field(default_factory=list)
    language: str = ""
    language_prob: float = 0.0


@dataclass
class Loaded:
    model: object
    batched: object | None
    label: str          # e.g. "whisper base int8 cpu"
    english_only: bool
    folder: str


_LOADED: dict[tuple, Loaded] = {}


def device_of(cfg) -> str:
    if cfg.device != "auto":
        return cfg.device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # noqa: BLE001 - a broken CUDA install means CPU, not a failed run
        return "cpu"


def load(cfg) -> Loaded:
    """The Whisper model of `cfg` (speech section) for this process. SpeechModelError when it is not
    installed; never a hub download (local_files_only, and only folders are passed)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from extract.speech.models import resolve

    folder, name, english_only = resolve(cfg.model)
    device = device_of(cfg)
    compute = cfg.compute_type or ("float16" if device == "cuda" else "int8")
    key = (str(folder), device, compute, cfg.cpu_threads)
    if key not in _LOADED:
        model = WhisperModel(str(folder), device=device, compute_type=compute, cpu_threads=cfg.cpu_threads,
                             local_files_only=True)
        batched = BatchedInferencePipeline(model) if cfg.batched else None
        english_only = not model.model.is_multilingual   # the model's own word over the folder's
        _LOADED[key] = Loaded(model, batched, f"whisper {name} {compute} {device}", english_only, str(folder))
    return _LOADED[key]


def transcribe(audio: np.ndarray, cfg, offset: float = 0.0) -> Heard:
    """Words heard in `audio` (16 kHz mono float32) with times + offset. Sub-word pieces Whisper emits
    without a leading space ("ill" "-disposed") are joined into the word before them."""
    from faster_whisper.vad import VadOptions

    m = load(cfg)
    if len(audio) < RATE // 5:
        return Heard()
    vad = VadOptions(threshold=cfg.vad_threshold, min_silence_duration_ms=cfg.vad_min_silence_ms,
                     speech_pad_ms=cfg.speech_pad_ms)
    common = dict(language="en" if m.english_only else None, beam_size=cfg.beam_size, word_timestamps=True,
                  # a hallucinated window must not seed the next one (repetition loops on long audio)
                  condition_on_previous_text=False, vad_filter=True, vad_parameters=vad)
    audio = np.ascontiguousarray(audio, np.float32)
    if m.batched is not None:
        segments, info = m.batched.transcribe(audio, batch_size=cfg.batch_size, **common)
    else:
        segments, info = m.model.transcribe(audio, **common)
    words: list[list] = []
    for seg in segments:          # a generator: decoding happens here, window by window
        check_deadline()
        for w in seg.words or []:
            tok = w.word
            if not tok.strip():
                continue
            if words and not tok.startswith(" "):
                prev = words[-1]
                prev[0] += tok.strip()
                prev[2] = max(prev[2], offset + w.end)
                prev[3] = min(prev[3], w.probability)
                continue
            words.append([tok.strip(), offset + w.start, offset + w.end, float(w.probability)])
    return Heard([tuple(w) for w in words], info.language or "", float(info.language_probability or 0.0))


__all__ = ["Heard", "Loaded", "load", "transcribe", "device_of", "RATE"]
