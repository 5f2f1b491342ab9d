"""Real recorded speech with known text, word times and speech edges: the pocketsphinx 5.1.1 sdist's
test recordings.

`test/data/librivox/` holds five LibriVox utterances (Sense and Sensibility, ch. 1; public domain) as
16 kHz mono WAV with their transcript (`.txt`), reference word alignments (`.json`: `{"w": [{"b": begin,
"d": duration, "t": token}]}`, `<sil>` between words, alternative pronunciations as `word(2)`) and
speech/silence labels (`.lab`: `time time speech|silence`). `cards/` holds five short card names.

The recordings are not in this repository: `librivox()` fetches the sdist with `pip download` (PyPI
only, as in CI; ~10 s) into a cache folder once and reads them from it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SDIST = "pocketsphinx==5.1.1"
RATE = 16000
_MEMBERS = ("test/data/librivox/", "test/data/cards/")


class PocketsphinxUnavailable(RuntimeError):
    """pip could not fetch the sdist (no registry access)."""


@dataclass
class Utt:
    name: str
    wav: Path
    text: str                       # the reference transcript (lower case, words spelled out)
    duration: float                 # s
    speech_start: float             # s: the first speech label (.lab), else the first word's start
    speech_end: float               # s: where the last speech ends
    words: list = field(default_factory=list)   # [(word, start, end)] from the reference alignment


def cache_dir() -> Path:
    return Path(os.environ.get("WORDSMILE_SPEECH", Path.home() / ".cache" / "wordsmile" / "pocketsphinx"))


def fetch(dest: Path | None = None) -> Path:
    """The folder holding `librivox/` and `cards/`, fetched with `pip download` once (safe to race: each
    caller downloads into its own temporary folder and the first to finish publishes `data/`)."""
    import shutil
    import tempfile

    dest = Path(dest or cache_dir())
    data = dest / "data"
    if (data / "librivox" / "fileids").is_file():
        return data
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest))
    try:
        # --no-binary for this one package only: the sdist holds the recordings, the wheels do not
        # (--no-binary :all: would also build its Cython extension: minutes)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "pocketsphinx", SDIST,
               "-d", str(work), "--quiet", "--disable-pip-version-check", "--timeout", "20", "--retries", "1"]
        shown = f"python -m pip download --no-deps --no-binary pocketsphinx {SDIST} -d {dest}"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PocketsphinxUnavailable(f"`{shown}` did not finish in 300 s: the test speech comes from that "
                                          f"sdist") from None
        tars = sorted(work.glob("pocketsphinx-*.tar.gz"))
        if proc.returncode != 0 or not tars:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
            raise PocketsphinxUnavailable(f"`{shown}` failed ({tail}): the test speech comes from that sdist")
        tmp = work / "data"
        with tarfile.open(tars[-1]) as tf:
            for m in tf.getmembers():
                rel = m.name.split("/", 1)[1] if "/" in m.name else ""
                if m.isfile() and rel.startswith(_MEMBERS) and ".." not in rel:
                    out = tmp / rel[len("test/data/"):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(m) as src:
                        out.write_bytes(src.read())
        if not (tmp / "librivox" / "fileids").is_file():
            raise PocketsphinxUnavailable(f"{tars[-1].name} holds no test/data/librivox/: not the expected sdist")
        try:
            tmp.rename(data)
        except OSError:
            if not (data / "librivox" / "fileids").is_file():   # not a racing fetch that got there first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return data


def read_wav(path: Path) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of a 16-bit PCM WAV at 16 kHz."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getsampwidth() != 2:
            raise ValueError(f"{path}: {w.getframerate()} Hz, {8 * w.getsampwidth()} bit; expected 16 kHz 16-bit")
        a = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
        return a.reshape(-1, w.getnchannels()).mean(axis=1) if w.getnchannels() > 1 else a


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def _words(p: Path) -> list[tuple[str, float, float]]:
    out = []
    for w in json.loads(p.read_text())["w"]:
        tok = w["t"]
        if tok.startswith("<") or tok.startswith("["):      # <sil>, <s>, </s>, [NOISE]
            continue
        out.append((re.sub(r"\(\d+\)$", "", tok), round(w["b"], 3), round(w["b"] + w["d"], 3)))
    return out


def _speech_edges(lab: Path) -> tuple[float, float] | None:
    """(first speech start, last speech end) of a `.lab` file: `t0 t1 speech|silence` lines, each
    marking where that state begins."""
    marks = []
    for line in lab.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            marks.append((float(parts[0]), parts[2]))
    starts = [t for t, s in marks if s == "speech"]
    if not starts:
        return None
    ends = [t for t, s in marks if s == "silence" and t > starts[0]]
    return starts[0], (ends[-1] if ends else None)


def librivox(dest: Path | None = None) -> list[Utt]:
    """The five LibriVox utterances, in file order."""
    d = fetch(dest) / "librivox"
    out = []
    for name in (d / "fileids").read_text().split():
        wav = d / f"{name}.wav"
        with wave.open(str(wav), "rb") as w:
            dur = w.getnframes() / w.getframerate()
        words = _words(d / f"{name}.json")
        edges = _speech_edges(d / f"{name}.lab") if (d / f"{name}.lab").is_file() else None
        s0 = edges[0] if edges else words[0][1]
        s1 = edges[1] if edges and edges[1] else words[-1][2]
        out.append(Utt(name, wav, (d / f"{name}.txt").read_text().strip(), round(dur, 3), round(s0, 3),
                       round(s1, 3), words))
    return out


def speech_track(utts: list[Utt], gaps_s: float = 1.0, lead_s: float = 0.5, rate: int = RATE,
                 noise_db: float | None = None, seed: int = 0, tail_s: float = 0.5) -> tuple[np.ndarray, list[dict]]:
    """The recordings one after another: `lead_s` of silence first, `gaps_s` of silence between them
    (besides each file's own ~0.2 s of leading and trailing silence), `tail_s` after, at `rate` Hz
    (resampled from 16 kHz), with an optional noise floor (`noise_db` dBFS, e.g. -60). Repeat utterances
    in `utts` to make long audio. Truth: per utterance {name, text, start, end (its speech edges), words
    [(word, start, end)]}, in seconds on the track."""
    parts, truth, t = [np.zeros(int(round(lead_s * RATE)), np.float32)], [], lead_s
    for k, u in enumerate(utts):
        a = read_wav(u.wav)
        truth.append({"name": u.name, "text": u.text, "start": round(t + u.speech_start, 3),
                      "end": round(t + u.speech_end, 3),
                      "words": [(w, round(t + s, 3), round(t + e, 3)) for w, s, e in u.words]})
        parts.append(a)
        t += len(a) / RATE
        if k < len(utts) - 1:
            parts.append(np.zeros(int(round(gaps_s * RATE)), np.float32))
            t += int(round(gaps_s * RATE)) / RATE
    parts.append(np.zeros(int(round(tail_s * RATE)), np.float32))
    audio = np.concatenate(parts)
    if rate != RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), RATE)
        audio = resample_poly(audio, int(rate) // g, RATE // g).astype(np.float32)
    if noise_db is not None:
        audio = audio + (10 ** (noise_db / 20) * np.random.default_rng(seed).standard_normal(len(audio))).astype(np.float32)
    return audio.astype(np.float32), truth


__all__ = ["Utt", "PocketsphinxUnavailable", "fetch", "librivox", "read_wav", "write_wav", "speech_track",
           "cache_dir", "SDIST", "RATE"]
