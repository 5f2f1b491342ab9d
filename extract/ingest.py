"""The ingest stage: every source of a manifest → one table of utterance segments (columns in
docs/ARCHITECTURE.md) plus one record per video/row (ok, skipped or failed with a reason).

Resumable: YouTube downloads keep a yt-dlp archive and per-video done markers; local sources are
re-read (cheap) with media probes memoised per source in `sources/SOURCE_ID/probes.json`.
A broken entry never stops the others: the stage runner turns an exception into one failed record.
"""
from __future__ import annotations

import importlib

import pandas as pd

from extract.sources.common import SEGMENT_COLUMNS, ProbeMemo
from pipeline.records import Record
from pipeline.stage import Stage

STAGE = "ingest"
CODE_VERSION = "1"

_READERS = {
    "youtube": ("extract.sources.youtube", "read_youtube"),
    "meld": ("extract.sources.meld", "read_meld"),
    "memor": ("extract.sources.memor", "read_memor"),
    "table": ("extract.sources.table", "read_table"),
    "folder": ("extract.sources.folder", "read_folder"),
}


class IngestStage(Stage):
    """One manifest entry -> its utterance segments and one record per video or row. Not cached here:
    each source kind keeps its own resume markers (docs/ARCHITECTURE.md, "What decides a rerun")."""

    name, code_version, section, cached = STAGE, CODE_VERSION, "sources", False

    def item_id(self, item) -> str:
        return item[0].id

    def label(self, item) -> str:
        return f"{item[0].id} ({item[0].kind})"

    def process(self, item, ctx, out=None) -> tuple[list[dict], list[Record]]:
        entry, manifest = item
        mod, fn = _READERS[entry.kind]
        reader = getattr(importlib.import_module(mod), fn)
        folder = ctx.ws.safe_child(ctx.ws.sources, entry.id)
        folder.mkdir(parents=True, exist_ok=True)
        memo = ProbeMemo(folder / "probes.json", ctx.ws, ctx.cfg.media.probe_timeout_s)
        try:
            rows, recs = reader(entry, manifest, ctx, memo)
        finally:
            memo.save()
        rows = [{c: r[c] for c in SEGMENT_COLUMNS} for r in rows]
        n_ok = sum(r.ok for r in recs)
        ctx.log.info("ingest %s (%s): %d segments, %d ok / %d records", entry.id, entry.kind, len(rows), n_ok,
                     len(recs))
        return rows, recs

    def failed_result(self, item, record: Record) -> tuple[list[dict], list[Record]]:
        record.detail = f"{item[0].kind} source {item[0].id!r}: {record.detail}"
        return [], [record]


INGEST = IngestStage()


def segments_frame(rows: list[dict], records: list[Record] | None = None) -> pd.DataFrame:
    """The segment table with fixed columns and dtypes, sorted by source, video, start (then end, id).

    A segment id twice never disappears silently: a genuine duplicate (the same video bytes, span and
    text, e.g. one clip reachable twice) is kept once and the drop recorded (`input.duplicate`) in
    `records`; a different row under the same id would be a reader's bug (ids are
    stable_id(source, video, start, end) and video ids cannot collide): kept out and recorded as
    `internal.error`, naming both rows."""
    df = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    for c in SEGMENT_COLUMNS:
        df[c] = df[c].astype("float64") if c in ("start", "end") else df[c].astype("string").fillna("").astype(object)
    dup = df.duplicated("segment_id", keep="first")
    if dup.any():
        from pipeline.records import Reason, failed, skipped

        kept = df[~dup].set_index("segment_id")
        for r in df[dup].itertuples(index=False):
            k = kept.loc[r.segment_id]
            what = f"segment {r.segment_id} ({r.video_path} {r.start:.3f}-{r.end:.3f} s)"
            item = f"{r.source_id}/{r.video_id}"
            same = (k.video_hash, k.start, k.end, k.text) == (r.video_hash, r.start, r.end, r.text)
            rec = (skipped(STAGE, item, Reason.DUPLICATE_SOURCE,
                           f"{what}: the same video bytes, span and text as {k.video_path}: kept once") if same else
                   failed(STAGE, item, Reason.ERROR,
                          f"{what}: its id is also that of a different segment ({k.video_path} {k.start:.3f}-"
                          f"{k.end:.3f} s, {k.text[:40]!r}): left out (a bug: segment ids must not collide)"))
            if records is not None:
                records.append(rec)
        df = df[~dup]
    return df.sort_values(["source_id", "video_id", "start", "end", "segment_id"], kind="mergesort").reset_index(drop=True)


__all__ = ["STAGE", "CODE_VERSION", "INGEST", "IngestStage", "segments_frame"]
