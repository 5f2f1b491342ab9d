"""Run one item of a stage the way every executor runs it: through the stage runner (pipeline/stage.py)."""
from __future__ import annotations

from pipeline.stage import run_item


def run_faces(seg: dict, ctx):
    from extract.faces.stage import FACES

    return run_item(FACES, seg, ctx)


def run_expressions(seg: dict, faces_dir, ctx):
    from extract.expressions.stage import EXPRESSIONS

    return run_item(EXPRESSIONS, {**seg, "faces_dir": str(faces_dir) if faces_dir else ""}, ctx)


def ingest_source(entry, manifest, ctx):
    """(segment rows, records) of one manifest entry."""
    from extract.ingest import INGEST

    return run_item(INGEST, (entry, manifest), ctx)


def ingest_manifest(manifest, ctx):
    """The segment table and records of every enabled entry."""
    from extract.ingest import segments_frame

    rows, recs = [], []
    for entry in manifest.sources:
        if entry.enabled:
            r, rc = ingest_source(entry, manifest, ctx)
            rows += r
            recs += rc
    return segments_frame(rows, recs), recs
