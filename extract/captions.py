"""Caption files (WebVTT, SRT) → cues → sentence-level utterances.

Handles manual captions (plain cues), YouTube's rolling automatic captions (each cue repeats the
previous line; the new line carries inline `<00:00:01.000><c> word</c>` timing tags) and SRT. Text is
cleaned of tags, entities and non-speech cues (`[Music]`, `(laughs)`, `♪ ... ♪`), normalised to NFC
with single spaces. Parsing never raises on bad input: unusable blocks are skipped and counted.

Merging (`merge_cues`) is lossless: every word of every cue ends up in exactly one utterance, in order.
Dropping too-short utterances is a separate, counted step (`drop_short`).
"""
from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config.sources import CaptionConfig

Word = tuple[str, float, float]


@dataclass
class Cue:
    start: float
    end: float
    text: str
    words: list[Word] | None = None   # per-word times when the file has them
    speaker: str = ""


@dataclass
class Utterance:
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    speaker: str = ""

    def words_json(self) -> str:
        if not self.words:
            return ""
        return json.dumps([[w, round(s, 3), round(e, 3)] for w, s, e in self.words], ensure_ascii=False)


@dataclass
class ParseResult:
    cues: list[Cue]
    fmt: str                 # "vtt" or "srt"
    rolling: bool            # YouTube-style rolling auto captions detected
    n_blocks: int = 0        # timed blocks seen
    n_bad: int = 0           # timed blocks with unusable timing (end before start, unparsable)
    n_nonspeech: int = 0     # blocks that held only non-speech text
    warnings: list[str] = field(default_factory=list)


class CaptionError(ValueError):
    pass


# ---------------------------------------------------------------- time stamps and tags

_TS = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})"
_TIMING_RE = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}")
_TS_TAG_RE = re.compile(r"<((?:\d{1,3}:)?\d{1,2}:\d{1,2}[.,]\d{1,3})>")
# Every pattern below runs in linear time on any input: a repeated run never overlaps the next part
# of the pattern and never crosses the opening character, so "<v <v <v ..." or "[[[[..." cannot make
# the engine rescan the rest of the line from every position (a 300 KB cue once took minutes).
_VOICE_RE = re.compile(r"<v(?:\.[^\s<>]*)?\s([^<>]*)>")
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>|</[A-Za-z]*>")
_ASS_RE = re.compile(r"\{\\[^{}]*\}")
_INVISIBLE_RE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_BRACKETED_RE = re.compile(r"\[[^\[\]]*\]")
_PARENS_RE = re.compile(r"\([^()]*\)")
_LABEL_RE = re.compile(r"^\s*([A-Z][A-Z0-9 .'\-]{0,30}):\s+(?=\S)")   # "JOHN: hi" speaker labels


def _ts(h, m, s, frac) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac) / 10 ** len(frac)


def parse_timestamp(text: str) -> float | None:
    m = re.fullmatch(_TS, text.strip())
    return _ts(*m.groups()) if m else None


def normalize_text(text: str) -> str:
    """NFC, invisible format characters removed, any whitespace run → one space."""
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE_RE.sub("", text)
    return " ".join(text.split())


def _strip_nonspeech(text: str, cfg: CaptionConfig) -> str:
    for _ in range(3):   # innermost first; three levels of nesting is plenty for captions
        text, n = _BRACKETED_RE.subn(" ", text)
        if not n:
            break
    if cfg.drop_parenthesised:
        for _ in range(3):
            text, n = _PARENS_RE.subn(" ", text)
            if not n:
                break
    # sung lyrics sit between music notes; a lone note marks music too
    text = re.sub(r"[♪♫][^♪♫]*[♪♫]", " ", text)
    text = re.sub(r"[♪♫]", " ", text)
    # speaker-change marks at the start of every line: "- Where are you going?\n- Out." keeps both
    text = re.sub(r"(?m)^[ \t]*(?:>>+|[-–])[ \t]*", " ", text)
    return text


def _clean(text: str, cfg: CaptionConfig) -> str:
    text = _ASS_RE.sub("", text)
    text = _TAG_RE.sub("", text)
    text = html.unescape(text)
    return normalize_text(_strip_nonspeech(text, cfg))


def _bare(line: str) -> str:
    """A line without markup, non-speech kept: tells a non-speech cue from an empty one."""
    return normalize_text(html.unescape(_TAG_RE.sub("", _TS_TAG_RE.sub("", _ASS_RE.sub("", line)))))


def _line_words(line: str, start: float, end: float, cfg: CaptionConfig) -> tuple[str, list[Word] | None]:
    """Clean one caption line; if it has inline timestamp tags, also return per-word times."""
    if not _TS_TAG_RE.search(line):
        return _clean(line, cfg), None
    chunks: list[tuple[float, str]] = []
    pos, t = 0, start
    for m in _TS_TAG_RE.finditer(line):
        chunks.append((t, line[pos:m.start()]))
        t = parse_timestamp(m.group(1))
        pos = m.end()
    chunks.append((t, line[pos:]))
    words: list[Word] = []
    for i, (t0, raw) in enumerate(chunks):
        t1 = chunks[i + 1][0] if i + 1 < len(chunks) else end
        t0, t1 = min(max(t0, start), end), min(max(t1, start), end)
        t1 = max(t1, t0)
        toks = _clean(raw, cfg).split()
        for k, w in enumerate(toks):   # several words in one chunk share its time evenly
            a = t0 + (t1 - t0) * k / len(toks)
            b = t0 + (t1 - t0) * (k + 1) / len(toks)
            words.append((w, a, b))
    return " ".join(w for w, _, _ in words), words


# ---------------------------------------------------------------- parsing

def _blocks(text: str) -> list[str]:
    """Blank-line separated blocks; a block holding several timing lines (a missing blank line) is
    split before each, taking a numeric SRT index line along. Whitespace-only lines are not
    separators: YouTube's auto captions put a " " line inside cues."""
    out = []
    for block in re.split(r"\n\n+", text):
        lines = block.split("\n")
        starts = [i for i, ln in enumerate(lines) if "-->" in ln]
        if len(starts) <= 1:
            out.append(block)
            continue
        cuts = [0] + [i - 1 if i > 0 and lines[i - 1].strip().isdigit() and i - 1 > starts[0] else i
                      for i in starts[1:]] + [len(lines)]
        out += ["\n".join(lines[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return out


def parse_captions(text: str, cfg: CaptionConfig | None = None, fmt: str | None = None) -> ParseResult:
    """Parse WebVTT or SRT text (detected from the `WEBVTT` header unless `fmt` is given)."""
    cfg = cfg or CaptionConfig()
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if fmt is None:
        fmt = "vtt" if text.lstrip().startswith("WEBVTT") else "srt"
    rolling = bool(_TS_TAG_RE.search(text))
    res = ParseResult(cues=[], fmt=fmt, rolling=rolling)
    blocks = _blocks(text)
    last_line = None          # rolling mode: the most recently emitted line
    prev_cue: Cue | None = None
    for bi, block in enumerate(blocks):
        lines = block.split("\n")
        ti = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if ti is None:
            head = block.strip()
            if not head or bi == 0 and head.startswith("WEBVTT") or re.match(r"^(NOTE|STYLE|REGION)\b", head) \
                    or head.isdigit():
                continue
            # a caption text with a blank line inside (sloppy SRT): it belongs to the previous cue
            if prev_cue is not None and not rolling:
                extra = _clean("\n".join(lines), cfg)
                if extra:
                    prev_cue.text = normalize_text(prev_cue.text + " " + extra)
                    prev_cue.words = None
            continue
        res.n_blocks += 1
        m = _TIMING_RE.match(lines[ti])
        if not m:
            res.n_bad += 1
            res.warnings.append(f"block {bi}: unparsable timing line {lines[ti].strip()[:60]!r}")
            continue
        g = m.groups()
        start, end = _ts(*g[:4]), _ts(*g[4:])
        if end < start:
            res.n_bad += 1
            res.warnings.append(f"block {bi}: cue ends ({end:.3f}) before it starts ({start:.3f})")
            continue
        body = [ln for ln in lines[ti + 1:]]
        size = sum(len(ln) for ln in body)
        if size > cfg.max_cue_chars:
            res.n_bad += 1
            res.warnings.append(f"block {bi}: cue of {size} characters skipped (limit sources.captions."
                                f"max_cue_chars = {cfg.max_cue_chars})")
            continue
        speaker = ""
        raw = " ".join(body)
        vm = _VOICE_RE.search(raw)
        if vm:
            speaker = normalize_text(html.unescape(vm.group(1)))[:100]
        first = _TAG_RE.sub("", _ASS_RE.sub("", body[0])) if body else ""
        lm = _LABEL_RE.match(first)
        if lm and not speaker:
            speaker = lm.group(1).strip().title()
            body[0] = _LABEL_RE.sub("", first, count=1)
        if rolling:
            emitted = False
            for ln in body:
                t, words = _line_words(ln, start, end, cfg)
                if not t or t == last_line:   # the repeated previous line, or a 10 ms "hold" cue
                    continue
                res.cues.append(Cue(start, end, t, words, speaker))
                last_line = t
                emitted = True
            if not emitted and any(_bare(ln) and not _clean(ln, cfg) for ln in body):
                res.n_nonspeech += 1
            continue
        t = _clean("\n".join(body), cfg)   # line breaks kept until each line's dash is stripped
        if not t:
            if " ".join(body).strip():
                res.n_nonspeech += 1
            continue
        cue = Cue(start, end, t, None, speaker)
        res.cues.append(cue)
        prev_cue = cue
    res.cues.sort(key=lambda c: (c.start, c.end))  # stable: equal times keep file order
    return res


def read_captions(path: str | Path, cfg: CaptionConfig | None = None) -> ParseResult:
    """Read a .vtt/.srt file (UTF-8, falling back to cp1252 for old SRTs). CaptionError if unreadable."""
    path = Path(path)
    cfg = cfg or CaptionConfig()
    try:
        size = path.stat().st_size
        if size > cfg.max_file_bytes:
            raise CaptionError(f"{path}: caption file of {size} bytes is over the limit "
                               f"(sources.captions.max_file_bytes = {cfg.max_file_bytes})")
        data = path.read_bytes()
    except OSError as e:
        raise CaptionError(f"{path}: cannot read caption file ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    fmt = "vtt" if path.suffix.lower() == ".vtt" or text.lstrip("\ufeff").startswith("WEBVTT") else "srt"
    return parse_captions(text, cfg, fmt)


# ---------------------------------------------------------------- cues → utterances

# a period after these does not end a sentence ("Mr. Dashwood", "e.g. this"), nor after an initial
# ("J. Smith"; not "I." or "a.": "So do I." ends one). Not "no." or "etc.": both often end a line.
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs e.g i.e".split())


def _ends_sentence(token: str, enders: str) -> bool:
    token = token.rstrip("\"'”’»)]")
    if not token or token[-1] not in enders:
        return False
    if token.endswith(".") and not token.endswith(".."):
        stem = token[:-1].lstrip("\"'“‘«([").lower()
        if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha() and stem not in "ia"):
            return False
    return True


def split_sentences(cue: Cue, enders: str) -> list[Cue]:
    """Split a cue at sentence ends inside it (times from word times, else by character share)."""
    toks = cue.text.split()
    cuts = [i + 1 for i, w in enumerate(toks[:-1]) if _ends_sentence(w, enders)]
    if not cuts:
        return [Cue(cue.start, cue.end, cue.text, list(cue.words) if cue.words else None, cue.speaker)]
    out = []
    bounds = [0] + cuts + [len(toks)]
    total = max(1, len(cue.text))
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = " ".join(toks[a:b])
        if cue.words and len(cue.words) == len(toks):
            ws = cue.words[a:b]
            out.append(Cue(ws[0][1], ws[-1][2], part, list(ws), cue.speaker))
        else:
            c0 = len(" ".join(toks[:a])) + (1 if a else 0)
            c1 = len(" ".join(toks[:b]))
            s = cue.start + (cue.end - cue.start) * c0 / total
            e = cue.start + (cue.end - cue.start) * c1 / total
            out.append(Cue(s, max(s, e), part, None, cue.speaker))
    return out


def merge_cues(cues: list[Cue], cfg: CaptionConfig | None = None) -> list[Utterance]:
    """Group cues into sentence-level utterances: a sentence end closes an utterance; a gap longer
    than `max_gap_s`, a speaker change or `max_duration_s` starts a new one. Lossless and ordered;
    utterances do not overlap (an end is clipped to the next start)."""
    cfg = cfg or CaptionConfig()
    pieces: list[Cue] = []
    for c in sorted(cues, key=lambda c: (c.start, c.end)):
        if c.text.strip():
            pieces.extend(split_sentences(c, cfg.sentence_end))
    # text order follows cue order; a sub-cue of a long cue may start after the next (overlapping)
    # cue does: clamp starts so that time never runs backwards
    t = float("-inf")
    for p in pieces:
        if p.start < t:
            p.start, p.end = t, max(p.end, t)
            if p.words:
                p.words = [(w, max(a, t), max(b, t)) for w, a, b in p.words]
        t = p.start
    out: list[Utterance] = []
    cur: Utterance | None = None
    mixed = False  # the current utterance has a piece without word times: drop its words

    def close():
        nonlocal cur, mixed
        if cur is not None:
            if mixed:
                cur.words = None
            out.append(cur)
        cur, mixed = None, False

    for p in pieces:
        if cur is not None and (p.start - cur.end > cfg.max_gap_s
                                or (p.speaker and cur.speaker and p.speaker != cur.speaker)
                                or max(cur.end, p.end) - cur.start > cfg.max_duration_s):
            close()
        if cur is None:
            cur = Utterance(p.start, p.end, p.text, list(p.words) if p.words else None, p.speaker)
            mixed = p.words is None
        else:
            cur.end = max(cur.end, p.end)
            cur.text = cur.text + " " + p.text
            if p.words is None:
                mixed = True
            elif cur.words is not None:
                cur.words.extend(p.words)
            cur.speaker = cur.speaker or p.speaker
        if _ends_sentence(p.text.split()[-1], cfg.sentence_end):
            close()
    close()
    for a, b in zip(out[:-1], out[1:]):   # rolling cues overlap: an utterance ends where the next starts
        if a.end > b.start:
            a.end = max(a.start, b.start)
            if a.words:
                a.words = [(w, min(s, a.end), min(e, a.end)) for w, s, e in a.words]
    for u in out:
        u.text = normalize_text(u.text)
    return out


def drop_short(utts: list[Utterance], min_duration_s: float) -> tuple[list[Utterance], int]:
    keep = [u for u in utts if u.end - u.start >= min_duration_s]
    return keep, len(utts) - len(keep)


def caption_utterances(path: str | Path, cfg: CaptionConfig | None = None) -> tuple[list[Utterance], dict]:
    """Read, merge and filter one caption file; returns utterances and figures for the record."""
    cfg = cfg or CaptionConfig()
    res = read_captions(path, cfg)
    utts = merge_cues(res.cues, cfg)
    utts, n_short = drop_short(utts, cfg.min_duration_s)
    figures = {"caption_format": res.fmt, "rolling": res.rolling, "n_cues": len(res.cues),
               "n_bad_cues": res.n_bad, "n_nonspeech": res.n_nonspeech, "n_short_dropped": n_short}
    return utts, figures


__all__ = ["Cue", "Utterance", "ParseResult", "CaptionError", "parse_captions", "read_captions",
           "parse_timestamp", "normalize_text", "split_sentences", "merge_cues", "drop_short",
           "caption_utterances"]
