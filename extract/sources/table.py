"""A generic table of utterances: CSV/TSV, JSONL or Parquet rows of
(video path or URL, start, end, text[, speaker, emotion, sentiment, split]).

Column names are matched case-insensitively, with common aliases (`video_path`, `url`, `utterance`,
`start_time`, ...). Relative paths resolve against `media_root` (default: the table's folder); URLs
are downloaded once through the yt-dlp path (same archive and URL policy as the youtube kind).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from extract.sources.common import (STAGE, LocalVideoIds, ProbeMemo, Provenance, RowError, check_span, fit_span, is_url,
                                    loads_json, norm_split, parse_time, read_text_mixed, segment_row,
                                    url_refusal)
from pipeline.records import Reason, Record, failed, ok, skipped
from pipeline.redact import redact_url

ALIASES = {
    "video": ["video", "video_path", "path", "file", "url", "clip", "media"],
    "start": ["start", "start_s", "start_time", "begin", "t0"],
    "end": ["end", "end_s", "end_time", "stop", "t1"],
    "text": ["text", "utterance", "transcript", "sentence", "caption"],
    "speaker": ["speaker", "speaker_name"],
    "emotion": ["emotion", "label"],
    "sentiment": ["sentiment"],
    "split": ["split", "subset", "partition"],
}
REQUIRED = ("video", "start", "end", "text")
_BAD_LINE = "\x00wordsmile-bad-line:"   # marks a malformed CSV line kept in place by read_rows


class TableTooLarge(ValueError):
    pass


def _check_size(path: Path, max_rows: int, max_bytes: int) -> None:
    """Refuse a table over the caps before its rows are materialised. Parquet: from its footer (row
    count and uncompressed size: dictionary encoding makes a 1 MB file of 40 M rows); text: from the
    file size, and the line count of the bytes (a cheap upper bound on the rows)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise TableTooLarge(f"{path}: {size} bytes on disk, over the limit sources.table.max_bytes = {max_bytes}")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        md = pq.ParquetFile(path).metadata
        raw = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        if md.num_rows > max_rows:
            raise TableTooLarge(f"{path}: {md.num_rows} rows, over the limit sources.table.max_rows = {max_rows}")
        if raw > max_bytes:
            raise TableTooLarge(f"{path}: {raw} bytes uncompressed, over the limit sources.table.max_bytes = "
                                f"{max_bytes}")
        return
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    if lines > max_rows + 1:   # + the header line
        raise TableTooLarge(f"{path}: {lines} lines, over the limit sources.table.max_rows = {max_rows}")


def read_rows(path: Path, max_rows: int = 1_000_000, max_bytes: int = 512 << 20) -> tuple[list[tuple[int, dict]], list[str]]:
    """(row number, row) pairs and per-line problems (JSONL lines that are not objects).
    ValueError for an unreadable file or an unknown extension; TableTooLarge over the caps."""
    ext = path.suffix.lower()
    if ext in (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson"):
        _check_size(path, max_rows, max_bytes)
    if ext in (".csv", ".tsv"):
        text, sep = read_text_mixed(path), "\t" if ext == ".tsv" else ","
        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep)
        except pd.errors.ParserError:
            # a line with too many fields (an unquoted comma) must not lose the good rows: read again,
            # keeping such lines in place, marked, so they become bad rows with their own number
            ncols = len(next(csv.reader(io.StringIO(text), delimiter=sep), []))
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep, engine="python",
                             on_bad_lines=lambda bad: [_BAD_LINE + str(len(bad))] + [""] * (ncols - 1))
        rows, bad = [], []
        first = df.columns[0] if len(df.columns) else None
        for i, r in enumerate(df.to_dict("records"), 1):
            v = r.get(first)
            if isinstance(v, str) and v.startswith(_BAD_LINE):
                bad.append(f"row{i}: {path.name} row {i} has {v[len(_BAD_LINE):]} fields but the header has "
                           f"{len(df.columns)} (an unquoted '{sep}' in the text?)")
            else:
                rows.append((i, r))
        return rows, bad
    if ext == ".parquet":
        df = pd.read_parquet(path)
        return [(i + 1, r) for i, r in enumerate(df.to_dict("records"))], []
    if ext in (".jsonl", ".ndjson"):
        rows, bad = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = loads_json(line)
            except ValueError as e:
                bad.append(f"{path.name} line {n}: not valid JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                bad.append(f"{path.name} line {n}: a JSON {type(obj).__name__}, not an object")
                continue
            rows.append((n, obj))
        return rows, bad
    raise ValueError(f"{path}: unknown table format {ext!r} (use .csv, .tsv, .jsonl or .parquet)")


def _columns(keys) -> dict[str, str]:
    low = {str(k).strip().lower(): k for k in keys}
    return {ours: next((low[a] for a in al if a in low), None) for ours, al in ALIASES.items()}


def _cell(row: dict, col) -> str:
    if col is None:
        return ""
    v = row.get(col)
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def read_table(entry, manifest, ctx, memo: ProbeMemo) -> tuple[list[dict], list[Record]]:
    from extract.sources.youtube import DownloadFailure, YouTubeFetcher, provenance
    from pipeline.media import ffmpeg_exe

    cfg = ctx.cfg.sources
    yc = cfg.youtube
    path = manifest.resolve(entry.path)
    media_root = manifest.resolve(entry.media_root) if entry.media_root else path.parent
    lic = manifest.license_of(entry)
    if not path.exists():
        return [], [failed(STAGE, entry.id, Reason.MISSING_FILE, f"table {path} does not exist")]
    try:
        items, bad_lines = read_rows(path, cfg.table.max_rows, cfg.table.max_bytes)
    except TableTooLarge as e:
        return [], [failed(STAGE, entry.id, Reason.BAD_ROW, f"{e}: raise the limit if the table is real")]
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types for a bad file
        return [], [failed(STAGE, entry.id, Reason.BAD_ROW, f"{path}: cannot read the table ({e})")]
    recs = [failed(STAGE, f"{entry.id}/{msg.split(':')[0]}", Reason.BAD_ROW, msg) for msg in bad_lines]
    if not items:
        return [], recs + [failed(STAGE, entry.id, Reason.BAD_ROW, f"{path}: the table has no rows")]
    cols = _columns({k for _, r in items for k in r})
    missing = [c for c in REQUIRED if cols[c] is None]
    if missing:
        return [], recs + [failed(STAGE, entry.id, Reason.BAD_ROW,
                                  f"{path}: missing column(s) {missing}; accepted names: "
                                  + "; ".join(f"{c}: {ALIASES[c]}" for c in missing))]
    fetcher = None
    fetched: dict[str, object] = {}   # URL → Fetched or DownloadFailure: each video fetched once
    rows, seen = [], set()
    video_id = LocalVideoIds()
    for n, r in tqdm(items, desc=f"table {entry.id}", unit="row", leave=False, disable=len(items) < 200):
        where = f"{path.name} row {n}"
        item = f"{entry.id}/row{n}"
        try:
            video = str(_cell(r, cols["video"])).strip()
            if not video:
                raise RowError(Reason.BAD_ROW, f"{where}: field 'video' is empty")
            t0 = parse_time(_cell(r, cols["start"]), f"{where} field 'start'")
            t1 = parse_time(_cell(r, cols["end"]), f"{where} field 'end'")
            text = str(_cell(r, cols["text"]))
            if not text.strip():
                raise RowError(Reason.EMPTY_TEXT, f"{where}: field 'text' is empty", "skipped")
            check_span(t0, t1, where, cfg.table.max_span_s)
            split = norm_split(_cell(r, cols["split"]), where)
            prov = Provenance(license=lic)
            if is_url(video):
                why = url_refusal(video, yc)
                if why:
                    raise RowError(Reason.URL_REFUSED, f"{where}: {redact_url(video)}: {why}")
                if video not in fetched:
                    fetcher = fetcher or YouTubeFetcher(ctx.ws.safe_child(ctx.ws.sources, entry.id), yc, ctx.log,
                                                        ffmpeg_exe())
                    try:
                        vids = fetcher.list_videos(video)
                        if len(vids) != 1:
                            raise DownloadFailure(Reason.BAD_ROW, f"{redact_url(video)} lists {len(vids)} videos; a table row "
                                                                  f"names exactly one")
                        fetched[video] = fetcher.fetch(*vids[0])
                    except DownloadFailure as e:
                        fetched[video] = e
                res = fetched[video]
                if isinstance(res, DownloadFailure):
                    raise RowError(res.reason, f"{where}: {res.detail}")
                if res.archived_only or not res.parts:
                    raise RowError(Reason.ALREADY_DOWNLOADED, f"{where}: {redact_url(video)} is in the download archive but "
                                                              f"its files are gone", "skipped")
                media, vid = res.parts[0].path, res.video_id
                prov = provenance(res, lic)
            else:
                media = Path(video).expanduser()
                media = media if media.is_absolute() else (media_root / media)
                media = media.resolve()
                vid = video_id(media, media_root.resolve())
                if not media.exists():
                    raise RowError(Reason.MISSING_FILE, f"{where}: field 'video': {media} does not exist")
            pr = memo.probe(media)
            t0, t1 = fit_span(t0, t1, pr["duration"], cfg.span_slack_s, f"{where} ({media.name})")
            seg = segment_row(source_id=entry.id, source_kind="table", video_id=vid, video_path=media,
                              video_hash=pr["hash"], start=t0, end=t1, text=text,
                              speaker=str(_cell(r, cols["speaker"])), emotion=str(_cell(r, cols["emotion"])),
                              sentiment=str(_cell(r, cols["sentiment"])), split=split, prov=prov)
            if seg["segment_id"] in seen:
                raise RowError(Reason.DUPLICATE_SOURCE, f"{where}: same video and span as an earlier row", "skipped")
            seen.add(seg["segment_id"])
            rows.append(seg)
            recs.append(ok(STAGE, item, output=str(media)))
        except RowError as e:
            detail = e.detail if e.detail.startswith(where) else f"{where}: {e.detail}"
            fn = skipped if e.status == "skipped" else failed
            recs.append(fn(STAGE, item, e.reason, detail))
        except (ValueError, OverflowError, TypeError) as e:   # an absurd value is this row's failure
            recs.append(failed(STAGE, item, Reason.BAD_ROW, f"{where}: unusable value ({type(e).__name__}: "
                                                            f"{str(e)[:200]})"))
    return rows, recs
