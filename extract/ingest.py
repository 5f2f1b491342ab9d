"""The ingest stage: every source of a manifest → one table of utterance segments (columns in
docs/ARCHITECTURE.md) plus one record per video/row (ok, skipped or failed with a reason).

Resumable: YouTube downloads keep a yt-dlp archive and per-video done markers; local sources are
re-read (cheap) with media probes memoised per source in `sources/SOURCE_ID/probes.json`.
A broken entry never stops the others: an unexpected exception becomes one failed record.
"""
from __future__ import annotations

import traceback

import pandas as pd
from tqdm import tqdm

from extract.sources.common import SEGMENT_COLUMNS, ProbeMemo
from pipeline.records import Reason, Record, failed
from pipeline.redact import redact_text

STAGE = "ingest"
CODE_VERSION = "1"

_READERS = {
    "youtube": ("extract.sources.youtube", "read_youtube"),
    "meld": ("extract.sources.meld", "read_meld"),
    "memor": ("extract.sources.memor", "read_memor"),
    "table": ("extract.sources.table", "read_table"),
    "folder": ("extract.sources.folder", "read_folder"),
}


def ingest_source(entry, manifest, ctx) -> tuple[list[dict], list[Record]]:
    """Segments (rows with exactly SEGMENT_COLUMNS) and records of one manifest entry."""
    import importlib

    mod, fn = _READERS[entry.kind]
    reader = getattr(importlib.import_module(mod), fn)
    folder = ctx.ws.safe_child(ctx.ws.sources, entry.id)
    folder.mkdir(parents=True, exist_ok=True)
    memo = ProbeMemo(folder / "probes.json", ctx.ws, ctx.cfg.media.probe_timeout_s)
    try:
        rows, recs = reader(entry, manifest, ctx, memo)
    except Exception as e:  # noqa: BLE001 - a bug in one reader must not lose the other sources
        tail = redact_text("".join(traceback.format_exception(e)[-3:]).strip())   # a URL may hold a token
        ctx.log.error("ingest %s (%s) crashed: %s", entry.id, entry.kind, redact_text(str(e)))
        return [], [failed(STAGE, entry.id, Reason.ERROR, f"{entry.kind} source {entry.id!r}: {tail[-800:]}")]
    finally:
        memo.save()
    rows = [{c: r[c] for c in SEGMENT_COLUMNS} for r in rows]
    n_ok = sum(r.ok for r in recs)
    ctx.log.info("ingest %s (%s): %d segments, %d ok / %d records", entry.id, entry.kind, len(rows), n_ok, len(recs))
    return rows, recs


def segments_frame(rows: list[dict]) -> pd.DataFrame:
    """The segment table with fixed columns and dtypes, sorted by source, video, start (then end, id)."""
    df = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    for c in SEGMENT_COLUMNS:
        df[c] = df[c].astype("float64") if c in ("start", "end") else df[c].astype("string").fillna("").astype(object)
    df = df.drop_duplicates("segment_id", keep="first")
    return df.sort_values(["source_id", "video_id", "start", "end", "segment_id"], kind="mergesort").reset_index(drop=True)


def ingest_manifest(manifest, ctx) -> tuple[pd.DataFrame, list[Record]]:
    """Run every enabled entry of the manifest; returns the segment table and all records."""
    rows: list[dict] = []
    recs: list[Record] = []
    entries = [e for e in manifest.sources if e.enabled]
    for entry in tqdm(entries, desc="ingest", unit="source", disable=len(entries) < 2):
        r, rc = ingest_source(entry, manifest, ctx)
        rows += r
        recs += rc
    return segments_frame(rows), recs


__all__ = ["STAGE", "CODE_VERSION", "ingest_source", "ingest_manifest", "segments_frame"]
