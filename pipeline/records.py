"""Item records: every item (video, utterance) of a run ends ok, skipped or failed with a reason from a
closed taxonomy, so a run can be summarised and audited. `docs/reasons.md` documents each reason."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable


class Status(str, Enum):
    OK = "ok"  # the item produced its result
    SKIPPED = "skipped"   # a deliberate rejection (filter, policy): the input is fine, it just does not qualify
    FAILED = "failed"     # something broke: unreadable file, network error, bug


class Reason(str, Enum):
    OK = "ok"
    # ingest: downloads
    DL_UNAVAILABLE = "download.unavailable"    # removed, private, deleted, 404
    DL_GEO = "download.geo_blocked"  # not available in this country
    DL_AGE = "download.age_gated"  # needs sign-in to confirm age
    DL_RATE_LIMITED = "download.rate_limited"  # HTTP 429, Too Many Requests, unusual traffic
    DL_BOT_CHECK = "download.bot_check"  # "Sign in to confirm you're not a bot": needs cookies or a PO token
    DL_TIMEOUT = "download.timeout"  # the overall deadline of a download or a video passed (a drip server)
    DL_NETWORK = "download.network"            # DNS, refused, timeout, truncated transfer
    DL_UNKNOWN = "download.unknown"  # a download error of no known class: the detail has the message
    URL_REFUSED = "download.url_refused"  # URL policy: file://, bad scheme, a name that does not resolve, a private address (also via a redirect or embedded media)
    ALREADY_DOWNLOADED = "download.archived"   # in the download archive: skipped on purpose
    # ingest: inputs and transcripts
    MISSING_FILE = "input.missing_file"  # a file the source names is not on disk (MELD clip, table video)
    BAD_ROW = "input.bad_row"                  # malformed table/CSV/JSON row
    BAD_TIME = "input.bad_time"                # unparsable, zero, negative or implausible span
    EMPTY_TEXT = "input.empty_text"  # a row or caption with no text
    NO_CAPTIONS = "input.no_captions"  # a clip or video without captions in the configured languages
    BAD_CAPTIONS = "input.bad_captions"  # a caption file that cannot be read or holds no usable cue
    DUPLICATE_SOURCE = "input.duplicate"  # the same video or row listed twice: kept once
    # media
    MEDIA_UNREADABLE = "media.unreadable"      # corrupt, truncated, zero bytes, not a media file
    MEDIA_NO_VIDEO = "media.no_video"          # audio-only
    MEDIA_SPAN = "media.span_outside"          # segment span outside the media duration
    # speech
    SPEECH_NO_AUDIO = "speech.no_audio"  # a video without text has no audio stream to transcribe
    SPEECH_NO_SPEECH = "speech.no_speech"  # no speech in the video or the span (VAD): silence, music, noise
    SPEECH_MISALIGNED = "speech.misaligned"  # the given text is not heard within its span ± speech.align_slack_s
    SPEECH_LOW_CONFIDENCE = "speech.low_confidence"  # a transcribed utterance's mean word probability is below speech.min_confidence
    SPEECH_LANGUAGE = "speech.language"  # the spoken language is not one of speech.languages
    SPEECH_TOO_LONG = "speech.too_long"  # the audio is longer than speech.max_audio_s
    SPEECH_TEXT_TOO_LONG = "speech.text_too_long"  # a given text has more words than its span (± the align slack) can hold at speech.max_words_per_s
    # faces
    NO_FACE = "faces.no_face"  # no face found in the segment
    BRIEF_FACE = "faces.brief_face"  # only a brief face (shorter than min_track_frames) or a detection the landmarker did not confirm
    MULTIPLE_FACES = "faces.multiple_faces"    # strict policy: a second face
    NO_DOMINANT = "faces.no_dominant_face"  # dominant policy: a competing face (not small, not brief), or the main one too rarely on screen
    NO_SPEAKER = "faces.speaker_undecided"  # speaker policy: competing faces and no usable audio, no moving mouth, or no face's mouth follows the audio by the margin
    LOW_PRESENCE = "faces.low_presence"  # the kept face is visible in too few frames
    LOW_COVERAGE = "faces.low_coverage"  # the kept face spans too little of the utterance (the rest would be trimmed)
    OFF_FRAME = "faces.off_frame"  # the face is cut by the frame edge (box or landmarks outside the picture) too often
    FACE_TOO_SMALL = "faces.too_small"  # the face is smaller than the minimum size (or only faces below the detector's limit)
    HEAD_POSE = "faces.head_pose"  # head turned too far (yaw/pitch/roll) too often
    BLURRY = "faces.blurry"  # the face crop is too blurred
    JITTER = "faces.jitter"  # landmarks jump between frames more than allowed
    TOO_SHORT = "faces.track_too_short"  # the face track is too short to carry expression
    # expressions
    BACKEND_ERROR = "expressions.backend_error"  # the expression backend failed on this segment
    NO_CODES = "expressions.no_valid_frames"  # no frame produced a valid code
    # assembly filters
    TOO_FEW_FRAMES = "filter.too_few_frames"  # fewer frames than assemble.min_frames
    TOO_MANY_FRAMES = "filter.too_many_frames"  # more frames than assemble.max_frames (EmoAva would truncate)
    LOW_VALID_RATIO = "filter.low_valid_ratio"  # too few frames with a valid face/code
    TEXT_NO_LETTERS = "filter.text_no_letters"  # the text has no letters (only digits, symbols, music notes)
    TEXT_TOO_LONG = "filter.text_too_long"  # more words than assemble.max_words
    DUPLICATE = "filter.duplicate"  # same text, video and span as an earlier sample
    NON_FINITE = "filter.non_finite_codes"  # NaN or infinite codes
    OUT_OF_RANGE = "filter.out_of_range_codes"  # codes outside the code space's plausible bounds
    EXCLUDED = "filter.excluded"               # listed in an opt-out / takedown file
    UPSTREAM = "upstream.not_ok"               # an earlier stage did not produce this item
    TIMEOUT = "item.timeout"                   # the item ran past its wall-clock deadline (orchestration.item_timeout_s)
    ERROR = "internal.error"                   # an unexpected exception (bug): detail has the traceback tail


class ItemError(Exception):
    """An expected failure of one item, with its most specific reason (a broken file, a timeout). The stage
    runner records it as failed and does not cache it, so a rerun tries again."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason, self.detail = Reason(reason), detail


@dataclass
class Record:
    stage: str
    item_id: str
    status: Status
    reason: Reason
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    def __post_init__(self):
        self.status = Status(self.status)
        self.reason = Reason(self.reason)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["reason"] = self.reason.value
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Record":
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "Record":
        return cls.from_json(json.loads(Path(path).read_text()))


def ok(stage: str, item_id: str, output: str = "", detail: str = "", **figures) -> Record:
    return Record(stage, item_id, Status.OK, Reason.OK, detail, figures, output)


def skipped(stage: str, item_id: str, reason: Reason, detail: str, **figures) -> Record:
    return Record(stage, item_id, Status.SKIPPED, reason, detail, figures)


def failed(stage: str, item_id: str, reason: Reason, detail: str, **figures) -> Record:
    return Record(stage, item_id, Status.FAILED, reason, detail, figures)


def records_frame(records: Iterable[Record]):
    import pandas as pd

    rows = []
    for r in records:
        d = r.to_json()
        d["figures"] = json.dumps(d["figures"], sort_keys=True, default=str)
        rows.append(d)
    cols = ["stage", "item_id", "status", "reason", "detail", "figures", "output"]
    return pd.DataFrame(rows, columns=cols)


def summary_frame(records: Iterable[Record]):
    """Counts per stage, status and reason: the funnel of a run."""
    df = records_frame(records)
    if df.empty:
        return df.assign(count=[])[["stage", "status", "reason", "count"]]
    return (df.groupby(["stage", "status", "reason"], sort=False).size()
              .reset_index(name="count"))


STAGE_ORDER = ["ingest", "speech", "faces", "expressions", "assemble", "release"]


def top_reasons(records: Iterable[Record], k: int = 5) -> list[dict]:
    """The k most frequent reasons items did not make it (failed first on ties), each with one example:
    {stage, status, reason, count, item_id, detail}. The detail names the file, row or URL."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if not r.ok:
            groups.setdefault((r.stage, r.status.value, r.reason.value), []).append(r)
    order = {st: i for i, st in enumerate(STAGE_ORDER)}
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0][1] != "failed", order.get(kv[0][0], 99),
                                                    kv[0][2]))
    out = []
    for (stage, status, reason), rs in ranked[:k]:
        ex = min(rs, key=lambda r: (not r.detail, r.item_id))
        out.append({"stage": stage, "status": status, "reason": reason, "count": len(rs), "item_id": ex.item_id,
                    "detail": " ".join(ex.detail.split())})
    return out


def print_summary(records: Iterable[Record], console=None, title: str = "Run summary") -> str:
    """Print the funnel as a table and the top reasons items did not make it, each with one example
    detail; returns the same as plain text (written to runs/ID/summary.txt)."""
    records = list(records)
    from rich.console import Console
    from rich.table import Table

    s = summary_frame(records)
    order = {st: i for i, st in enumerate(STAGE_ORDER)}
    if not s.empty:
        s = s.assign(_o=s["stage"].map(lambda x: order.get(x, 99))).sort_values(
            ["_o", "status", "reason"]).drop(columns="_o")
    table = Table(title=title)
    for c in ("stage", "status", "reason", "count"):
        table.add_column(c, justify="right" if c == "count" else "left")
    for row in s.itertuples(index=False):
        style = {"ok": "green", "skipped": "yellow", "failed": "red"}.get(row.status, "")
        table.add_row(row.stage, row.status, row.reason, str(row.count), style=style)
    top = top_reasons(records)
    lines = []
    if top:
        lines.append("Top reasons items did not make it (one example each):")
        for t in top:
            detail = t["detail"] if len(t["detail"]) <= 240 else t["detail"][:237] + "..."
            lines.append(f"  {t['count']:>4} × {t['stage']} {t['status']} {t['reason']}")
            lines.append(f"         e.g. {t['item_id']}: {detail or '(no detail)'}")
    console = console or Console()
    text_console = Console(width=100, record=True, file=open("/dev/null", "w"))
    for c in (console, text_console):
        c.print(table)
        for line in lines:
            c.print(line, markup=False, highlight=False, soft_wrap=True)
    return text_console.export_text()


def reasons_markdown() -> str:
    """docs/reasons.md, generated from the Reason enum and its inline comments (`python -m pipeline.records`)."""
    import inspect
    import re

    src = inspect.getsource(Reason)
    notes = {m.group(1): m.group(2).strip() for m in
             re.finditer(r'^\s+\w+ = "([^"]+)"\s*#\s*(.*)$', src, re.M)}
    lines = ["# Item reasons", "",
             "Every item of a run ends `ok`, `skipped` (a deliberate rejection: the input is fine but does not "
             "qualify) or `failed` (something broke) with one of these reasons. The record's `detail` names the "
             "file, row, field or figure. Generated from `pipeline/records.py` by `python -m pipeline.records`.",
             "", "| reason | stage | meaning |", "| --- | --- | --- |"]
    for r in Reason:
        stage = r.value.split(".")[0] if "." in r.value else "any"
        lines.append(f"| `{r.value}` | {stage} | {notes.get(r.value, r.name.replace('_', ' ').lower())} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reasons_markdown(), end="")
