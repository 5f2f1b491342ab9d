"""A speech-stage cache entry: what was heard in one video and the utterances made from it.

`speech.json`:

    {"version": 1, "model": "whisper base int8", "language": "en", "language_prob": 0.98,
     "audio_stream": 0, "duration": 31.2, "heard": [[c0, c1], ...],    # the audio spans transcribed
     "speech": [[s, e], ...],                                          # VAD speech regions (media s)
     "utterances": [{"segment_id", "status" ("ok"|"skipped"), "reason", "detail", "start", "end", "text",
                     "words": [[word, start, end, probability|null], ...], "span_source"
                     ("given"|"aligned"|"asr"), "given_start", "given_end" (null for asr), "asr_confidence"
                     (null when not heard), "match" (share of given words heard; null for asr),
                     "speech_spans": [[s, e], ...]}, ...]}

Times are seconds on the media timeline (pipeline/media.py): container start = 0.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.formats import FormatError

SPEECH_FILE = "speech.json"
VERSION = 1
_UTT_KEYS = ("segment_id", "status", "reason", "start", "end", "text", "words", "span_source")


def write_speech(entry: str | Path, data: dict) -> None:
    for i, u in enumerate(data.get("utterances", [])):
        missing = [k for k in _UTT_KEYS if k not in u]
        if missing:
            raise ValueError(f"write_speech: utterance {i} lacks {missing}")
    write_json(Path(entry) / SPEECH_FILE, {"version": VERSION, **data})


def read_speech(entry: str | Path) -> dict:
    """speech.json of an entry, checked: a version this code reads, utterances with their keys and
    start < end."""
    p = Path(entry) / SPEECH_FILE
    if not p.is_file():
        raise FormatError(p, "missing (not a speech entry)", missing=True)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(p, f"unreadable ({e})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise FormatError(p, f"version {data.get('version') if isinstance(data, dict) else None!r}, expected {VERSION}")
    for i, u in enumerate(data.get("utterances", [])):
        missing = [k for k in _UTT_KEYS if k not in u]
        if missing:
            raise FormatError(p, f"utterance {i} lacks {missing}")
        if u["status"] == "ok" and not float(u["start"]) < float(u["end"]):
            raise FormatError(p, f"utterance {i}: start {u['start']} is not before end {u['end']}")
    return data


def words_json(words) -> str:
    """The segment table's `words` text: [[word, start, end(, probability)], ...] or ''."""
    if not words:
        return ""
    out = []
    for w in words:
        row = [w[0], round(float(w[1]), 3), round(float(w[2]), 3)]
        if len(w) > 3:
            row.append(None if w[3] is None else round(float(w[3]), 3))
        out.append(row)
    return json.dumps(out, ensure_ascii=False)


__all__ = ["SPEECH_FILE", "write_speech", "read_speech", "words_json"]
