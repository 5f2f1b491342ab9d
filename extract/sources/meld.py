"""MELD on disk (docs/sources.md): `{split}_sent_emo.csv` + one clip per utterance.

The CSV's StartTime/EndTime are *episode* times; each clip `dia{D}_utt{U}.mp4` already is the
utterance, so a segment is the whole clip, [0, clip duration]. The CSV times are only used to reject
rows whose span is zero, negative or implausibly long (real MELD has all three).
"""
from __future__ import annotations


import io

import pandas as pd
from tqdm import tqdm

from extract.sources.common import (STAGE, ProbeMemo, Provenance, RowError, check_span, parse_time,
                                    read_text_mixed, segment_row)
from pipeline.records import Reason, Record, failed, ok, skipped

CSV_NAME = "{split}_sent_emo.csv"
REQUIRED = ["Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime"]


def _fix_mojibake(text: str) -> str:
    """Some MELD releases hold UTF-8 curly quotes decoded as cp1252 ('â€™'): undo that when it round-trips."""
    if "â€" in text or "Ã" in text:
        try:
            return text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return text
    return text


def _int_field(row, col: str, where: str) -> int:
    v = str(row[col]).strip()
    try:
        if len(v) > 12:   # real ids have a few digits; a 400-digit one is this row's error, not an inf
            raise ValueError
        f = float(v)
        if f != int(f) or f < 0:
            raise ValueError
        return int(f)
    except (ValueError, OverflowError):
        raise RowError(Reason.BAD_ROW, f"{where}: field {col!r} is {v!r}, not a non-negative integer") from None


def read_meld(entry, manifest, ctx, memo: ProbeMemo) -> tuple[list[dict], list[Record]]:
    cfg = ctx.cfg.sources
    root = manifest.resolve(entry.root)
    lic = manifest.license_of(entry)
    prov = Provenance(license=lic)
    rows: list[dict] = []
    recs: list[Record] = []
    if not root.is_dir():
        return [], [failed(STAGE, entry.id, Reason.MISSING_FILE, f"MELD root {root} is not a folder")]
    for split in entry.splits:
        csv = root / CSV_NAME.format(split=split)
        sid = f"{entry.id}/{split}"
        if not csv.exists():
            recs.append(failed(STAGE, sid, Reason.MISSING_FILE, f"{csv}: MELD CSV for split {split!r} is missing"))
            continue
        try:
            df = pd.read_csv(io.StringIO(read_text_mixed(csv)), dtype=str, keep_default_na=False)
        except Exception as e:  # noqa: BLE001 - any parser error is a bad file, named with its cause
            recs.append(failed(STAGE, sid, Reason.BAD_ROW, f"{csv}: not a readable CSV ({e})"))
            continue
        df.columns = [c.strip().lstrip("\ufeff") for c in df.columns]
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            recs.append(failed(STAGE, sid, Reason.BAD_ROW, f"{csv}: missing column(s) {missing}; "
                                                           f"found {list(df.columns)}"))
            continue
        dirs = [root / d for d in cfg.meld.clip_dirs.get(split, [])]
        clip_dir = next((d for d in dirs if d.is_dir()), None)
        if clip_dir is None:
            recs.append(failed(STAGE, sid, Reason.MISSING_FILE,
                               f"no clip folder for split {split!r} under {root} (tried {[str(d) for d in dirs]}); "
                               f"{len(df)} rows not ingested", n_rows=len(df)))
            continue
        seen: set[tuple[int, int]] = set()
        for i, row in tqdm(list(df.iterrows()), desc=f"meld {split}", unit="row", leave=False,
                           disable=len(df) < 200):
            where = f"{csv.name} row {i + 1}"
            item = f"{sid}/row{i + 1}"
            try:
                dia = _int_field(row, "Dialogue_ID", where)
                utt = _int_field(row, "Utterance_ID", where)
                name = f"dia{dia}_utt{utt}"
                item = f"{sid}/{name}"
                where = f"{csv.name} row {i + 1} ({name})"
                if (dia, utt) in seen:
                    raise RowError(Reason.DUPLICATE_SOURCE, f"{where}: repeats an earlier row's dialogue/utterance", "skipped")
                seen.add((dia, utt))
                text = _fix_mojibake(str(row["Utterance"]))
                if not text.strip():
                    raise RowError(Reason.EMPTY_TEXT, f"{where}: field 'Utterance' is empty", "skipped")
                t0 = parse_time(row["StartTime"], f"{where} field 'StartTime'")
                t1 = parse_time(row["EndTime"], f"{where} field 'EndTime'")
                check_span(t0, t1, where, cfg.meld.max_span_s)
                clip = clip_dir / f"{name}.mp4"
                if not clip.exists():
                    raise RowError(Reason.MISSING_FILE, f"{where}: clip {clip} does not exist")
                pr = memo.probe(clip)
                if pr["duration"] <= 0:
                    raise RowError(Reason.MEDIA_SPAN, f"{where}: clip {clip} has zero duration", "skipped")
                vid = f"{split}_{name}"
                rows.append(segment_row(source_id=entry.id, source_kind="meld", video_id=vid, video_path=clip,
                                        video_hash=pr["hash"], start=0.0, end=pr["duration"], text=text,
                                        speaker=str(row["Speaker"]), emotion=str(row["Emotion"]),
                                        sentiment=str(row["Sentiment"]), split=split, prov=prov))
                recs.append(ok(STAGE, item, output=str(clip), csv_start=t0, csv_end=t1, duration=pr["duration"]))
            except RowError as e:
                fn = skipped if e.status == "skipped" else failed
                recs.append(fn(STAGE, item, e.reason, e.detail))
    return rows, recs
