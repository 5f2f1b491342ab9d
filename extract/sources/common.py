"""Shared pieces of the source readers: the segment-table row, time parsing, URL policy, probing."""
from __future__ import annotations

import codecs
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from extract.captions import normalize_text
from pipeline.atomic import write_json
from pipeline.hashing import file_hash, stable_id
from pipeline.records import Reason

STAGE = "ingest"

# the segment table (docs/ARCHITECTURE.md), in this order
SEGMENT_COLUMNS = ["segment_id", "source_id", "source_kind", "video_id", "video_path", "video_hash",
                   "start", "end", "text", "words", "text_source", "speaker", "emotion", "sentiment", "split",
                   "url", "title", "uploader", "license", "downloaded_at", "tool_versions"]

# where a segment's text came from, by source kind (YouTube says captions or auto-captions per video)
TEXT_SOURCES = {"folder": "captions", "youtube": "captions", "meld": "corpus", "memor": "corpus", "table": "table"}


def placeholder_row(*, duration: float, **row) -> dict:
    """The row of a video that came without text: its whole span, no text, text_source none. The speech
    stage transcribes it (or skips it as input.no_captions under speech.transcript: captions); it never
    reaches the face stage as it is."""
    return segment_row(start=0.0, end=duration, text="", text_source="none", **row)


# video file extensions (the YouTube reader's download files, the local-id twin check)
MEDIA_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv", ".3gp", ".ts")

SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "dev", "val": "dev", "valid": "dev",
                 "validation": "dev", "test": "test", "testing": "test", "": ""}


class RowError(ValueError):
    """A bad input row or item: carries the Reason; the message names file, row and field."""

    def __init__(self, reason: Reason, detail: str, status: str = "failed"):
        self.reason, self.detail, self.status = Reason(reason), detail, status
        super().__init__(detail)


@dataclass
class Provenance:
    url: str = ""
    title: str = ""
    uploader: str = ""
    license: str = ""
    downloaded_at: str = ""
    tool_versions: str = "{}"


class LocalVideoIds:
    """The video_id of a local media file: its path under the source's root (else its name) without the
    extension, as its sidecar captions are named, unless another video file of the same stem lies in the
    same folder (x.mp4 + x.ts): then with the extension, so the two never share a video_id and with it
    every segment id (stable_id(source, video, start, end)). Only twins get the extension, so the ids
    of every other clip, and of datasets already built from them, stay as they were. Decided by what is
    on disk (one listing per folder), so a file's id does not depend on which rows or pattern name it."""

    def __init__(self):
        self._stems: dict[Path, dict[str, int]] = {}

    def __call__(self, media: Path, root: Path | None = None) -> str:
        try:
            rel = media.relative_to(root) if root is not None else Path(media.name)
        except ValueError:
            rel = Path(media.name)
        folder = media.parent
        if folder not in self._stems:
            counts: dict[str, int] = {}
            try:
                for p in folder.iterdir():
                    if p.suffix.lower() in MEDIA_EXTS:
                        counts[p.stem] = counts.get(p.stem, 0) + 1
            except OSError:
                pass
            self._stems[folder] = counts
        twin = self._stems[folder].get(media.stem, 0) > 1 and media.suffix.lower() in MEDIA_EXTS
        return (rel if twin else rel.with_suffix("")).as_posix()


def segment_row(*, source_id: str, source_kind: str, video_id: str, video_path: Path, video_hash: str,
                start: float, end: float, text: str, words: str = "", speaker: str = "", emotion: str = "",
                sentiment: str = "", split: str = "", prov: Provenance | None = None,
                text_source: str | None = None) -> dict:
    """One row of the segment table. `text_source` says where the text came from (captions, auto-captions,
    corpus, table; none = no text: a placeholder spanning the video, for the speech stage to transcribe);
    by default the source kind's."""
    prov = prov or Provenance()
    if text_source is None:
        text_source = TEXT_SOURCES[source_kind]
    start, end = round(float(start), 3), round(float(end), 3)
    return {
        "segment_id": stable_id(source_id, video_id, f"{start:.3f}", f"{end:.3f}"),
        "source_id": source_id, "source_kind": source_kind, "video_id": video_id,
        "video_path": str(video_path), "video_hash": video_hash, "start": start, "end": end,
        "text": normalize_text(text), "words": words, "text_source": text_source, "speaker": normalize_text(speaker or ""),
        "emotion": (emotion or "").strip().lower(), "sentiment": (sentiment or "").strip().lower(),
        "split": split, "url": prov.url, "title": prov.title, "uploader": prov.uploader,
        "license": prov.license, "downloaded_at": prov.downloaded_at, "tool_versions": prov.tool_versions,
    }


def norm_split(value, where: str) -> str:
    v = str(value or "").strip().lower()
    if v not in SPLIT_ALIASES:
        raise RowError(Reason.BAD_ROW, f"{where}: field 'split' is {value!r}; expected train, dev or test")
    return SPLIT_ALIASES[v]


_CLOCK_RE = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})(?:[.,:](\d{1,6}))?\s*$")


def parse_time(value, where: str) -> float:
    """Seconds from a number or a clock string (`0:20:57,256`, `00:20:57.256`, `20:57`, `12.5`).
    RowError(BAD_TIME) naming `where` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:   # a 400-digit integer: this row's problem, not the source's
            raise RowError(Reason.BAD_TIME, f"{where}: time {str(value)[:20]}… ({len(str(value))} digits) "
                                            f"is too large") from None
    else:
        s = str(value if value is not None else "").strip().replace("\u202f", "").replace(" ", "")
        m = _CLOCK_RE.match(s)
        if m:
            h, mi, se, frac = m.groups()
            if int(mi) >= 60 or int(se) >= 60:
                raise RowError(Reason.BAD_TIME, f"{where}: time {value!r} has minutes/seconds ≥ 60")
            x = int(h or 0) * 3600 + int(mi) * 60 + int(se) + (int(frac) / 10 ** len(frac) if frac else 0.0)
        else:
            try:
                x = float(s.replace(",", ".")) if s.count(",") <= 1 and "." not in s else float(s)
            except ValueError:
                raise RowError(Reason.BAD_TIME, f"{where}: time {value!r} is not a number or h:mm:ss,mmm") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise RowError(Reason.BAD_TIME, f"{where}: time {value!r} is not finite")
    return x


def check_span(start: float, end: float, where: str, max_span_s: float) -> None:
    if start < 0:
        raise RowError(Reason.BAD_TIME, f"{where}: negative start {start:.3f} s", "skipped")
    if end <= start:
        raise RowError(Reason.BAD_TIME, f"{where}: empty or negative span {start:.3f}-{end:.3f} s", "skipped")
    if end - start > max_span_s:
        raise RowError(Reason.BAD_TIME, f"{where}: span {start:.3f}-{end:.3f} s lasts {end - start:.1f} s, "
                                        f"longer than the {max_span_s:g} s limit", "skipped")


def _cp1252_bytes(err: UnicodeDecodeError):
    return err.object[err.start:err.end].decode("cp1252", errors="replace"), err.end


codecs.register_error("wordsmile-cp1252", _cp1252_bytes)


def _c1_char(c: str) -> str:
    try:
        return bytes([ord(c)]).decode("cp1252")
    except UnicodeDecodeError:   # 0x81, 0x8D, 0x8F, 0x90, 0x9D: unassigned in cp1252, pure control
        return ""


_C1 = {cp: _c1_char(chr(cp)) for cp in range(0x80, 0xA0)} | {0xA0: " "}


def fix_c1(text: str) -> str:
    """C1 control characters (U+0080–U+009F) read as what they are in cp1252, and U+00A0 as a space.
    MELD's CSVs as its tarball ships them hold U+0092 for ’, U+0085 for …, U+0091/93/94/96/97 for
    quotes and dashes; left alone they stay as control characters, and `str.split` takes U+0085 for
    whitespace (the ellipsis is lost). Real text never means a C1 control, so this is safe anywhere."""
    return text.translate(_C1)


def read_text_mixed(path: Path) -> str:
    """UTF-8 text where stray non-UTF-8 bytes (real MELD CSVs hold cp1252 quotes such as 0x92) are
    read as cp1252 instead of being replaced, and C1 controls are mapped through cp1252 (`fix_c1`)
    before anything else reads the text: no character is lost."""
    return fix_c1(path.read_bytes().decode("utf-8-sig", errors="wordsmile-cp1252"))


def _int_or_text(digits: str):
    """json parse_int: Python refuses int() of more than 4300 digits, which would fail the whole
    file; such a value stays text, so only the row that holds it is rejected."""
    return int(digits) if len(digits) <= 4000 else digits


def loads_json(text: str):
    """json.loads where one absurd number cannot fail the whole document (see `_int_or_text`)."""
    return json.loads(text, parse_int=_int_or_text)


# ---------------------------------------------------------------- URL policy

def check_url(url: str, allow_file: bool, allow_private: bool, allow_hosts=()) -> str:
    """Return '' if the URL may be fetched, else why not (→ Reason.URL_REFUSED). The host must resolve
    and every address must be public, unless listed in `allow_hosts` or `allow_private` is set; the
    same policy is applied again to every request on the wire (extract/sources/netguard.py)."""
    from extract.sources.netguard import AddressPolicy

    try:
        u = urlsplit(url.strip())
    except ValueError as e:
        return f"not a valid URL ({e})"
    scheme = u.scheme.lower()
    if scheme == "file":
        return "" if allow_file else "file:// URLs read local files; set sources.youtube.allow_file_urls=true to allow"
    if scheme not in ("http", "https"):
        return f"scheme {scheme or '(none)'!r} is not http(s)"
    if not u.hostname:
        return "URL has no host"
    policy = AddressPolicy(allow_private, frozenset(h.strip().lower() for h in allow_hosts))
    return policy.check_url(url)


def url_refusal(url: str, yc) -> str:
    """check_url with the settings of a `sources.youtube` config section."""
    return check_url(url, yc.allow_file_urls, yc.allow_private_urls, yc.allow_hosts)


def is_url(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s.strip()))


# ---------------------------------------------------------------- probing with a memo

class ProbeMemo:
    """Media probes memoised on (path, size, mtime) in a JSON file, so re-reading a large local corpus
    (MELD has ~14k clips) does not run ffmpeg again per clip. Errors are memoised too."""

    def __init__(self, path: Path, ws=None, timeout: float = 60.0):
        self.path, self.ws, self.timeout = path, ws, timeout
        self._lock = threading.Lock()
        self.dirty = False
        try:
            self.data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            self.data = {}

    def _key(self, p: Path) -> str:
        st = p.stat()
        return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def probe(self, p: Path) -> dict:
        """{'duration', 'fps', 'width', 'height', 'hash'} or raises RowError(MEDIA_*/MISSING_FILE)."""
        from pipeline.media import MediaError, probe

        if not p.exists():
            raise RowError(Reason.MISSING_FILE, f"{p}: file does not exist")
        key = self._key(p)
        with self._lock:
            hit = self.data.get(key)
        if hit is None:
            try:
                info = probe(p, timeout=self.timeout)
                hit = {"duration": info.duration, "fps": info.fps, "width": info.width, "height": info.height,
                       "hash": file_hash(p, self.ws.hash_db if self.ws else None)}
            except MediaError as e:
                if "did not finish" in e.detail:   # a timeout may be load, not the file: not memoised
                    raise RowError(e.reason, f"{p}: {e.detail}") from None
                hit = {"error": e.detail, "reason": e.reason.value}
            with self._lock:
                self.data[key] = hit
                self.dirty = True
        if "error" in hit:
            raise RowError(Reason(hit["reason"]), f"{p}: {hit['error']}")
        return hit

    def save(self) -> None:
        with self._lock:
            if self.dirty:
                write_json(self.path, self.data)
                self.dirty = False


def fit_span(start: float, end: float, duration: float, slack: float, where: str) -> tuple[float, float]:
    """Check a span against the media duration; a small overrun (rounding) is clipped."""
    if start >= duration or end > duration + slack:
        raise RowError(Reason.MEDIA_SPAN, f"{where}: span {start:.3f}-{end:.3f} s lies outside the media "
                                          f"(duration {duration:.3f} s)", "skipped")
    return start, min(end, duration)
