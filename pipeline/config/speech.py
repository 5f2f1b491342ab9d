"""Speech settings (extract/speech/): transcription and alignment from the audio itself."""
from __future__ import annotations

from typing import Literal

from pipeline.config._base import F, Section


class SpeechConfig(Section):
    transcript: Literal["auto", "captions", "asr"] = F(
        "auto", "where texts come from: auto = manual captions and corpus/table text are kept, automatic "
                "captions are replaced by ASR and videos with no text are transcribed; captions = only given "
                "text (a video without it is skipped); asr = every video transcribed, given text ignored")
    align: Literal["auto", "off"] = F(
        "auto", "auto: move each given span to where its words are said (span ± align_slack_s) and reject "
                "text not found in the audio; off: trust given spans as they are")
    model: str = F("base", "Whisper model: 'base' (multilingual) or 'tiny.en' (installed by `wordsmile models "
                           "install`), or a local CTranslate2 folder (medium.en as EmoAva, large-v3, "
                           "distil-large-v3); never a hub name", local_only=True)
    device: Literal["auto", "cpu", "cuda"] = F("auto", "cuda when CTranslate2 sees a GPU, else cpu")
    compute_type: str = F("", "CTranslate2 compute type; empty = int8 on CPU, float16 on CUDA")
    cpu_threads: int = F(1, "threads per worker process: one per core scales better across processes", ge=1)
    batched: bool = F(True, "faster-whisper's batched pipeline (VAD chunks decoded in batches, as WhisperX does): on "
                            "one CPU core at beam 5 as fast as the sequential decoder at beam 1, and more accurate "
                            "(docs/speech.md); false = the sequential decoder")
    batch_size: int = F(8, "windows decoded at once by the batched pipeline (EmoAva ran 32 on a GPU)", ge=1)
    beam_size: int = F(5, "beam width: greedy (1) missed 3 of 72 words on the short LibriVox clips where 5 "
                          "missed 1 (docs/speech.md)", ge=1)
    languages: list[str] = F(["en"], "spoken languages accepted; another detected language is rejected "
                                    "(speech.language); empty = any")
    min_language_prob: float = F(0.5, "below this language-detection confidence the language check does not "
                                      "reject (too little speech to tell)", ge=0, le=1)
    vad_threshold: float = F(0.5, "Silero VAD speech probability threshold", gt=0, lt=1)
    vad_min_silence_ms: int = F(300, "a silence shorter than this does not end a speech region", ge=0)
    speech_pad_ms: int = F(100, "VAD regions padded by this before Whisper hears them (word onsets kept)", ge=0)
    edge_pad_s: float = F(0.05, "a refined utterance keeps this much audio before its first and after its "
                                "last word", ge=0)
    align_slack_s: float = F(1.5, "a given span is searched for its words within ± this", ge=0)
    min_match: float = F(0.75, "share of a given text's words that must be heard in its window; below it the "
                               "segment is speech.misaligned. Right texts matched >= 0.94 on the LibriVox track, a "
                               "wrong sentence sharing 'he might have been made' with the one said 0.63 "
                               "(docs/speech.md)", ge=0, le=1)
    max_words_per_s: float = F(6.0, "a given text with more words than this per second of its span ± align_slack_s "
                                     "is speech.text_too_long without being heard (read speech runs ~2.5 words/s, "
                                     "fast conversation ~5)", gt=0)
    min_confidence: float = F(0.35, "transcribed utterances whose mean word probability is below this are "
                                    "rejected (speech.low_confidence): music, noise, another language",
                              ge=0, le=1)
    min_speech_share: float = F(0.2, "a span with less VAD speech than this share is speech.no_speech", ge=0, le=1)
    max_audio_s: float = F(2 * 3600.0, "refuse to transcribe media longer than this (speech.too_long): at base's "
                                       "~10x real time on one core 2 h take ~12 min, inside the default 30 min item "
                                       "deadline, and its samples (0.46 GB float32) are held in memory", gt=0)
