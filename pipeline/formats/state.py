"""State tables: `WORKSPACE/state/NAME/STAGE.parquet` (the latest table a stage produced for dataset NAME:
the segment table, plus `faces_dir` after faces, `codes_dir` after expressions) and `records-STAGE.parquet`
(its records). A stage rerun alone (`--stages assemble`) starts from them, and the renderer finds a
sample's source clip and face track through them."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.atomic import write_parquet
from pipeline.records import Record, records_frame


def state_path(state_dir: str | Path, stage: str) -> Path:
    return Path(state_dir) / f"{stage}.parquet"


def write_state(state_dir: str | Path, stage: str, table: pd.DataFrame, records: list[Record]) -> None:
    write_parquet(state_path(state_dir, stage), table)
    write_parquet(Path(state_dir) / f"records-{stage}.parquet", records_frame(records))


def read_state(state_dir: str | Path, stage: str) -> tuple[pd.DataFrame, list[Record]] | None:
    """(table, records) of a stage, or None when it never ran for this dataset."""
    p = state_path(state_dir, stage)
    if not p.exists():
        return None
    rp = Path(state_dir) / f"records-{stage}.parquet"
    recs = []
    if rp.exists():
        for r in pd.read_parquet(rp).to_dict("records"):
            r["figures"] = json.loads(r["figures"] or "{}")
            recs.append(Record.from_json(r))
    return pd.read_parquet(p), recs
