"""Given text against heard words: where in the audio a sentence is said, and how much of it is.

A local alignment (Smith-Waterman on normalised tokens) rather than a global diff: the window around a
given span also holds the neighbours' speech, and a global match would stretch the span to any common
word ("I", "the") said a second before. A match scores +2, a near match (same word, other spelling:
colour/color) +1, a substitution or gap -1, so a lone common word across a gap never joins the span.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

_ABBREV = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay", "st": "saint", "vs": "versus"}
_STRIP_RE = re.compile(r"[^\w']+")


def norm_tokens(word: str) -> list[str]:
    """A word as the tokens compared: lower case, accents and punctuation gone, hyphenated parts split,
    a few spoken forms of abbreviations (Whisper writes "Mr.", texts write "mister" and vice versa)."""
    w = unicodedata.normalize("NFKD", word.lower().replace("’", "'").replace("‘", "'"))
    w = "".join(c for c in w if not unicodedata.combining(c))
    out = []
    for part in re.split(r"[-‐‑‒–—/]+", w):
        part = _STRIP_RE.sub("", part).strip("'").replace("_", "")
        if part:
            out.append(_ABBREV.get(part, part))
    return out


def tokens(words: list[str]) -> tuple[list[str], list[int]]:
    """Normalised tokens of a word list and, per token, the index of its word."""
    toks, owner = [], []
    for i, w in enumerate(words):
        for t in norm_tokens(w):
            toks.append(t)
            owner.append(i)
    return toks, owner


def _sim(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) > 3 and len(b) > 3 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8:
        return 0.5
    return 0.0


@dataclass
class Alignment:
    share: float              # share of the given tokens heard (near matches count half)
    pairs: list               # (given token index, heard token index) for matched and substituted tokens
    n_given: int
    n_matched: float

    @property
    def ok(self) -> bool:
        return bool(self.pairs)


def local_align(given: list[str], heard: list[str], prefer=None) -> Alignment:
    """The best local alignment of `given` tokens inside `heard` tokens. `prefer(j)` -> a distance for
    the heard token an alignment ends on: among equal scores the nearest wins (a short "Yeah." said
    twice in the window)."""
    n, m = len(given), len(heard)
    if not n or not m:
        return Alignment(0.0, [], n, 0.0)
    H = [[0.0] * (m + 1) for _ in range(n + 1)]
    T = [[0] * (m + 1) for _ in range(n + 1)]   # 0 stop, 1 diagonal, 2 up (given gap), 3 left (heard gap)
    best, ends = 0.0, []
    for i in range(1, n + 1):
        gi, Hi, Hp, Ti = given[i - 1], H[i], H[i - 1], T[i]
        for j in range(1, m + 1):
            s = _sim(gi, heard[j - 1])
            diag = Hp[j - 1] + (2.0 if s == 1.0 else 1.0 if s else -1.0)
            up, left = Hp[j] - 1.0, Hi[j - 1] - 1.0
            v, t = max((diag, 1), (up, 2), (left, 3), (0.0, 0))
            Hi[j], Ti[j] = v, t
            if v > best + 1e-9:
                best, ends = v, [(i, j)]
            elif v > 0 and abs(v - best) <= 1e-9:
                ends.append((i, j))
    if best <= 0:
        return Alignment(0.0, [], n, 0.0)
    i, j = min(ends, key=lambda e: prefer(e[1] - 1)) if prefer and len(ends) > 1 else ends[0]
    pairs, matched = [], 0.0
    while i > 0 and j > 0 and H[i][j] > 0:
        t = T[i][j]
        if t == 1:
            matched += _sim(given[i - 1], heard[j - 1])
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif t == 2:
            i -= 1
        elif t == 3:
            j -= 1
        else:
            break
    pairs.reverse()
    return Alignment(matched / n, pairs, n, matched)


def refine_edges(start: float, end: float, loud, pad: float, lo: float, hi: float,
                 reach: float = 0.5) -> tuple[float, float]:
    """An utterance's edges from its first and last word, checked against the audio's energy.

    Whisper's word times are cross-attention estimates: on the LibriVox clips a drawn-out last word
    ends ~0.3 s after Whisper says, and a pause can be absorbed into a neighbouring word. So each edge
    moves, within `reach`, to where the loudness (`loud`, vad.Loudness) crosses 20 dB below the
    utterance's loud frames (at least 8 dB above the window's floor): outwards while speech goes on,
    inwards when the word time lies in silence. Then `pad` of audio is kept on both sides; never past
    lo/hi (the neighbours' edges, the search window, the media)."""
    s, e = start, end
    if loud is not None:
        s, e = loud.edges(start, end, max(lo, start - reach), min(hi, end + reach), reach)
    s, e = max(lo, s - pad), min(hi, e + pad)
    return (s, e) if e > s else (start, end)


__all__ = ["norm_tokens", "tokens", "local_align", "Alignment", "refine_edges"]
