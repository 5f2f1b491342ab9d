"""The assemble stage: filters, splits and writers turning coded segments into a dataset folder
(docs/ARCHITECTURE.md "Dataset folder", docs/datasets.md)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataset.assemble.filters import AssembleError, select
from dataset.assemble.splits import assign_split
from pipeline.formats.dataset import SPLITS
from pipeline.formats.dataset import software_versions, write_dataset
from pipeline.atomic import atomic_dir, write_text
from pipeline.codespaces import CODE_SPACES
from pipeline.context import StageContext
from pipeline.formats.track import read_quality
from pipeline.manifest import check_safe_id
from pipeline.records import Record, print_summary, summary_frame
from pipeline.redact import redact_text
from pipeline.stage import read_stats

STAGE = "assemble"
CODE_VERSION = "1"

_SEG_STR_COLUMNS = ["source_id", "source_kind", "video_id", "video_hash", "words", "speaker", "emotion",
                    "sentiment", "url", "title", "uploader", "license", "downloaded_at", "tool_versions",
                    "text_source", "span_source", "language", "speech_model", "speech_spans"]
# the speech stage's numbers (tables built before it lack them: NaN / -1); segment column -> Parquet column
_SEG_NUM_COLUMNS = {"given_start": "given_start", "given_end": "given_end", "asr_confidence": "asr_confidence",
                    "match": "text_match"}




def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def _flatten(prefix: str, obj: Any, out: dict) -> None:
    """Nested quality figures → flat face_* columns. Lists of numbers (per-frame series, per-track
    figures, cut frames) stay lists, so the Parquet holds real list columns; anything else nested
    (lists of objects) becomes JSON text."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            _flatten(f"{prefix}_{k}", obj[k], out)
    elif isinstance(obj, (list, tuple)):
        if all(v is None or _is_number(v) for v in obj):
            out[prefix] = list(obj)
        else:
            out[prefix] = json.dumps(obj, sort_keys=True, default=str)
    else:
        out[prefix] = obj


def face_columns(faces_dir: str) -> dict[str, Any]:
    """quality.json figures as face_* columns (missing or unreadable files give no columns)."""
    out: dict[str, Any] = {}
    if faces_dir:
        _flatten("face", read_quality(faces_dir), out)
    return out


def coverage(n_frames: int, fps: float, start: float, end: float) -> float:
    """Share of the utterance [start, end) that the sample's frames cover (faces.min_coverage rejects low
    ones upstream; the expression stage may trim a few more frames without a usable code)."""
    span = end - start
    return round(min(1.0, n_frames / fps / span), 4) if span > 0 and fps > 0 else 0.0


def _coerce_face(df: pd.DataFrame) -> pd.DataFrame:
    """One Arrow type per face_* column: numbers stay numbers, anything mixed becomes text."""
    for c in [c for c in df.columns if c.startswith("face_")]:
        vals = df[c].tolist()
        present = [v for v in vals if v is not None and not (isinstance(v, float) and np.isnan(v))]
        if present and all(isinstance(v, list) for v in present):
            # list<int64> when every element is a whole number (frame indices), else list<double>
            ints = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                       for v in present for x in v if x is not None)
            conv = int if ints else float
            df[c] = pd.Series([[None if x is None else conv(x) for x in v] if isinstance(v, list) else None
                               for v in vals], index=df.index, dtype=object)
        elif all(isinstance(v, bool) for v in present) and present:
            df[c] = [None if v not in (True, False) else bool(v) for v in vals]
            df[c] = df[c].astype("boolean")
        elif all(_is_number(v) for v in present):
            df[c] = pd.to_numeric(pd.Series(vals, index=df.index, dtype=object), errors="coerce").astype("float64")
        else:
            df[c] = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else
                     (v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)) for v in vals]
    return df


def samples_table(kept, ratios: list[float], salt: str) -> pd.DataFrame:
    rows = []
    for row, c in kept:
        split, method = assign_split(row, ratios, salt)
        r = {"sample_id": str(row["segment_id"]), "split": split, "text": " ".join(str(row["text"]).split()),
             "codes": c.codes, "n_frames": int(c.codes.shape[0]), "fps": float(c.fps),
             "duration": float(c.codes.shape[0] / c.fps), "valid_ratio": float(c.valid.mean()),
             "coverage": coverage(c.codes.shape[0], c.fps, float(row["start"]), float(row["end"])),
             "code_space": c.code_space, "start": float(row["start"]), "end": float(row["end"]),
             "official_split": str(row.get("split") or ""), "split_method": method,
             "extractor_versions": json.dumps(c.meta, sort_keys=True, default=str)}
        for col in _SEG_STR_COLUMNS:
            v = row.get(col, "")
            r[col] = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        for col, name in _SEG_NUM_COLUMNS.items():
            v = row.get(col)
            r[name] = float("nan") if v is None or v == "" else float(v)
        if not r["span_source"]:
            r["span_source"] = "given"   # a table from before the speech stage: spans as the source gave them
            r["given_start"], r["given_end"] = r["start"], r["end"]
        r["shift_start"], r["shift_end"] = r["start"] - r["given_start"], r["end"] - r["given_end"]
        a = row.get("audio_stream")
        r["audio_stream"] = -1 if a is None or a == "" or (isinstance(a, float) and np.isnan(a)) else int(a)
        r.update(face_columns(str(row.get("faces_dir") or "")))
        rows.append(r)
    if not rows:
        from pipeline.formats.dataset import CORE_COLUMNS, PROVENANCE_COLUMNS
        floats = ("fps", "duration", "valid_ratio", "coverage", "start", "end", "given_start", "given_end",
                  "shift_start", "shift_end", "asr_confidence", "text_match")
        return pd.DataFrame({c: pd.Series(dtype=float if c in floats else int if c in ("n_frames", "audio_stream")
                                          else object)
                             for c in CORE_COLUMNS + ["coverage"] + PROVENANCE_COLUMNS})
    return _coerce_face(pd.DataFrame(rows))


def _manifest_text(manifest) -> str:
    if manifest is None:
        return ""
    p = getattr(manifest, "path", None)
    if p and Path(p).is_file():
        return Path(p).read_text(encoding="utf-8")
    if hasattr(manifest, "model_dump"):
        import yaml
        return yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return Path(manifest).read_text(encoding="utf-8")


def _sources(df: pd.DataFrame, manifest) -> list[dict]:
    out = []
    entries = {e.id: e for e in getattr(manifest, "sources", [])} if manifest is not None else {}
    for sid, part in (df.groupby("source_id", sort=True) if not df.empty else []):
        e = entries.get(sid)
        lic = sorted({x for x in part["license"] if x}) or ([manifest.license_of(e)] if e is not None else [])
        out.append({"source_id": sid, "kind": str(part["source_kind"].iloc[0]), "license": lic or ["unknown"],
                    "samples": int(len(part)), "videos": int(part["video_id"].nunique()),
                    "split_method": sorted(set(part["split_method"]))})
    return out


def assemble(segments: pd.DataFrame, ctx: StageContext, name: str, records: list[Record] | None = None,
             manifest=None, extra_files: dict[str, Path] | None = None,
             exclude: set[str] | None = None) -> tuple[Path, list[Record]]:
    """Filter, split and write the dataset folder `ctx.ws.datasets / name` (built in a temporary folder and
    renamed into place). `records` are the upstream stages' records (for the rejection funnel);
    `extra_files` are copied in as-is (e.g. {"rig.npz": path} for arkit52); `exclude` drops sample ids.
    Returns the folder and one Record per considered sample."""
    import time

    from dataset.assemble import card, report

    t_start = time.monotonic()
    check_safe_id(name)
    cfg = ctx.cfg.assemble
    warnings = []
    if cfg.min_frames > cfg.max_frames:
        # not an error: an assemble-only rerun may do this on purpose; the card and report say so
        warnings.append(f"assemble.min_frames ({cfg.min_frames}) > assemble.max_frames ({cfg.max_frames}): "
                        f"every sample is rejected")
    for col in ("segment_id", "text", "start", "end"):
        if col not in segments.columns:
            raise AssembleError(f"segment table has no column {col!r} (columns: {list(segments.columns)})")
    if "codes_dir" not in segments.columns:
        raise AssembleError("segment table has no 'codes_dir' column: run the expressions stage first")
    todo = segments[segments["codes_dir"].fillna("").astype(str) != ""]
    rows = todo.to_dict("records")
    kept, recs, first = select(rows, cfg, exclude)
    if not kept:
        # an empty dataset is still written (with its card, report and funnel): it says why nothing passed
        warnings.append(f"no sample passed the filters ({len(rows)} segments with codes out of "
                        f"{len(segments)}): see the funnel for the reasons")
        ctx.log.warning("dataset %s: %s", name, warnings[-1])
    df = samples_table(kept, cfg.split_ratios, cfg.split_salt)
    code_space = first.code_space if first else ""
    dims = list(first.dims) if first else []
    versions = software_versions()
    extractor = sorted({s for s in df["extractor_versions"]})
    all_records = list(records or []) + recs
    info = {
        "name": name,
        "description": getattr(manifest, "description", "") or "",
        "code_space": code_space,
        "dims": dims,
        "jaw_dims": CODE_SPACES[code_space].jaw_indices(dims) if code_space in CODE_SPACES else [],  # EmoAva: ×5
        "codes": "smooth" if cfg.use_smoothed else "raw",
        "config_hash": ctx.cfg.hash(),
        "assemble_config": cfg.model_dump(mode="json"),
        "assemble_code_version": CODE_VERSION,
        "versions": {"software": versions, "extractors": [json.loads(e) for e in extractor]},
        "sources": _sources(df, manifest),
        "funnel": summary_frame(all_records).to_dict("records"),
        "funnel_by_source": report.source_funnel(all_records, segments),
        "rejected_examples": report.rejected_examples(all_records),
        "warnings": warnings,
        "extra_files": sorted(extra_files or {}),
    }
    dest = ctx.ws.datasets / name
    with atomic_dir(dest, replace=True) as tmp:
        try:   # the writer refuses NaN/inf codes and statistics (the filter skips such samples first)
            meta = write_dataset(tmp, df, info, cfg.pickle_protocol, cfg.std_floor)
        except ValueError as e:
            raise AssembleError(f"{dest}: {e}") from None
        for fname, src in sorted((extra_files or {}).items()):
            if "/" in fname or fname.startswith(".") or fname in meta["columns"]:
                raise AssembleError(f"extra file name {fname!r} must be a plain file name")
            shutil.copyfile(src, tmp / fname)
        prov = tmp / "provenance"
        write_text(prov / "config.yaml", ctx.cfg.to_yaml())
        mtext = redact_text(_manifest_text(manifest))   # no credentials/tokens of source URLs
        if mtext:
            write_text(prov / "manifest.yaml", mtext)
        write_text(prov / "run_summary.txt", print_summary(all_records, console=_quiet_console(),
                                                           title=f"{name}: records by stage"))
        media = {str(r["segment_id"]): (str(r.get("video_path") or ""), float(r["start"]), float(r["end"]),
                                        str(r.get("faces_dir") or "")) for r, _ in kept}
        rejects = report.reject_media(meta["rejected_examples"], all_records, segments)
        ctx.log.info("dataset %s: writing the report", name)
        run = report.run_metadata(ctx.run_dir, time.monotonic() - t_start)
        report.write_report(tmp, meta, df, cfg, media=media, log=ctx.log, rejects=rejects, run=run)
        card.write_card(tmp, meta, df)
        run = {**run, **report.run_metadata(ctx.run_dir, time.monotonic() - t_start)}
        write_text(prov / "run.json", json.dumps({"run_dir": str(ctx.run_dir.name), "cache": read_stats(ctx.run_dir),
                                                  **run}, indent=2, sort_keys=True) + "\n")
        readable_modes(tmp)
    ctx.log.info("assembled %s: %s", dest, {s: meta["counts"][s]["samples"] for s in SPLITS})
    return dest, recs


def readable_modes(root: Path) -> None:
    """Temporary files are created 0600; a dataset is meant to be read by others (and by the trainer)."""
    import os

    os.chmod(root, 0o755)
    for p in root.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _quiet_console():
    from rich.console import Console
    return Console(file=open("/dev/null", "w"), width=100)


__all__ = ["STAGE", "CODE_VERSION", "assemble", "AssembleError"]
