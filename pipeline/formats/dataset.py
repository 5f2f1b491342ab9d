"""Writers and readers of the dataset folder: EmoAva stage-1 pickles, train statistics, the per-split
Parquet files data/{train,validation,test}.parquet, dataset.json.

Everything here is a pure function of the samples table, so two builds from the same inputs give
byte-identical stage-1 files and the release command can rewrite a dataset minus excluded samples.
Other code reads the samples through `read_samples` (all splits, or one) and never opens the Parquet
files itself."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import pickletools
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import write_bytes, write_json
from pipeline.formats import FormatError

FORMAT_VERSION = 2   # 2: one Parquet file per split under data/ (1: a single samples.parquet)
SPLITS = ("train", "dev", "test")   # EmoAva's split names, in file-name order
# Hugging Face's split names (its loaders know "validation", not "dev") and the file of each split.
HF_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
DATA_FILES = {s: f"data/{HF_SPLITS[s]}.parquet" for s in SPLITS}
LEGACY_PARQUET = "samples.parquet"   # format 1: every split in one file (still readable)
# Parquet columns every dataset has, in this order; provenance, face_* and others follow.
CORE_COLUMNS = ["sample_id", "split", "text", "codes", "n_frames", "fps", "duration", "valid_ratio",
                "code_space"]
# Per-sample quality columns placed right after the core ones (absent from datasets built before them).
# coverage: the share of the utterance's span (end - start) that the sample's frames cover.
QUALITY_COLUMNS = ["coverage"]
# Segment-table columns copied to Parquet (docs/ARCHITECTURE.md). Local paths (video_path, cache dirs)
# are left out: they mean nothing on another machine and would leak the builder's folder names.
PROVENANCE_COLUMNS = ["source_id", "source_kind", "video_id", "video_hash", "start", "end", "words",
                      "text_source", "span_source", "given_start", "given_end", "shift_start", "shift_end",
                      "asr_confidence", "text_match", "language", "speech_model", "audio_stream", "speech_spans",
                      "speaker", "emotion", "sentiment", "official_split", "split_method", "url", "title", "uploader",
                      "license", "downloaded_at", "tool_versions", "extractor_versions"]
# `words`: one struct per word; probability is null where no recogniser heard it (caption word times)
WORD_FIELDS = (("word", "string"), ("start", "float64"), ("end", "float64"), ("probability", "float64"))
STAT_FILES = ("stage1_mean.npy", "stage1_std.npy")

# What each column means: the card's data-fields section is written from these, so every column of the
# Parquet files is documented (face_* columns are the faces stage's quality.json figures, flattened).
COLUMN_DOCS = {
    "sample_id": "the segment id, stable across builds (hash of source, video, start, end)",
    "split": "EmoAva split name: train, dev or test (the Parquet file is train / validation / test)",
    "text": "the utterance, whitespace-normalised; exactly the text in {split}_stage1_text.pkl",
    "codes": "expression codes, one inner list of D values per video frame: np.stack(row['codes']) is (T, D)",
    "n_frames": "T, the number of frames (inner lists) in codes",
    "fps": "frame rate of the codes (frames per second, not normalised across samples)",
    "duration": "n_frames / fps, seconds",
    "valid_ratio": "share of frames with a measured (not interpolated) face and code",
    "coverage": "share of the utterance's span (end - start) that the sample's frames cover",
    "code_space": "meaning of the D columns: arkit52 (MediaPipe blendshapes) or flame53 (EMOCA FLAME exp + jaw)",
    "source_id": "the manifest's source id",
    "source_kind": "source type: youtube, meld, memor, table or folder",
    "video_id": "the video's id within its source (YouTube id, MELD diaX_uttY, file name)",
    "video_hash": "SHA-256 of the video file's bytes",
    "start": "utterance start in the video, seconds",
    "end": "utterance end in the video, seconds",
    "words": "per word: word, start and end (s in the video) and the recogniser's probability (null for caption "
             "word times); empty when neither captions nor the speech stage timed the words",
    "text_source": "where the text came from: captions, auto-captions (YouTube's), corpus (MELD/MEmoR), table, "
                   "or asr (transcribed from the audio by Whisper)",
    "span_source": "where start/end came from: given (as the source said), aligned (moved to where the given "
                   "words are said) or asr (the transcribed words' edges)",
    "given_start": "the source's start before alignment, seconds (NaN when the span came from ASR)",
    "given_end": "the source's end before alignment, seconds (NaN when the span came from ASR)",
    "shift_start": "start - given_start, seconds (NaN without a given span)",
    "shift_end": "end - given_end, seconds (NaN without a given span)",
    "asr_confidence": "mean Whisper word probability of the utterance's heard words (NaN when not heard)",
    "text_match": "share of the given text's words heard in the audio (aligned spans; NaN otherwise)",
    "language": "spoken language Whisper detected in the video (empty when not heard)",
    "speech_model": "the speech model that heard it, e.g. 'whisper base int8 cpu' (empty when not heard)",
    "audio_stream": "the audio stream heard (position among the file's audio streams, ffmpeg 0:a:N; -1 none)",
    "speech_spans": "VAD speech regions inside the utterance, JSON [[start, end], ...] seconds (empty when not heard)",
    "speaker": "speaker name from the source, empty when unknown",
    "emotion": "emotion label from the source (MELD, MEmoR), empty when none",
    "sentiment": "sentiment label from the source (MELD), empty when none",
    "official_split": "the source's own split, empty when it has none",
    "split_method": "official (kept from the source) or hashed (by source video)",
    "url": "where the video came from",
    "title": "video title from the source's metadata",
    "uploader": "uploader or channel from the source's metadata",
    "license": "licence of the source video or corpus",
    "downloaded_at": "UTC time of the download (YouTube), empty otherwise",
    "tool_versions": "versions of the ingest tools (JSON text)",
    "extractor_versions": "expression backend, smoothing and model versions (JSON text)",
}
FACE_DOCS = {
    "decision": "face-selection outcome (ok)", "decision_detail": "why this face was kept",
    "decided_by": "which rule kept the face: dominant or speaker (empty under strict)",
    "policy": "face-selection policy: strict, dominant or speaker", "n_tracks": "face tracks found in the segment",
    "track_cover": "per track: share of frames it is present in", "track_px": "per track: median face size, px",
    "multi_face_frames": "share of frames with two or more faces", "speaker_margin": "best minus runner-up mouth-audio r",
    "n_frames": "frames analysed", "cuts": "frame indices where a shot starts", "n_detect": "frames the detector ran on",
    "n_landmark": "landmarker calls", "unconfirmed_detections": "detections the landmarker found no face in",
    "seconds": "face-analysis time, seconds", "n_valid": "frames with measured landmarks",
    "n_bridged": "frames interpolated across short gaps", "presence": "share of frames with the kept face (coverage)",
    "face_px_median": "median face size (longer box side), px", "face_px_min": "smallest face size, px",
    "sharpness_median": "median Laplacian variance of the face crop", "jitter_median": "median landmark jitter / face size",
    "per_frame_face_px": "per frame: face size, px (null where not measured)",
    "per_frame_sharpness": "per frame: crop sharpness (null where not measured)",
    "per_frame_yaw": "per frame: head yaw, degrees (null where not measured)",
    "per_frame_pitch": "per frame: head pitch, degrees (null where not measured)",
    "per_frame_roll": "per frame: head roll, degrees (null where not measured)",
    "overview_frame": "frame index of the overview (most faces on screen)",
    "overview_t": "overview frame time from the segment start, seconds",
    "overview_kept": "index of the kept track in overview_boxes", "overview_boxes": "per track: box at the overview frame (JSON)",
}
for _a in ("yaw", "pitch", "roll"):
    FACE_DOCS.update({f"{_a}_median": f"median head {_a}, degrees", f"{_a}_abs_median": f"median |{_a}|, degrees",
                      f"{_a}_abs_max": f"largest |{_a}|, degrees"})


def column_doc(name: str) -> str:
    """The meaning of a Parquet column (every column has one)."""
    if name in COLUMN_DOCS:
        return COLUMN_DOCS[name]
    if name.startswith("face_"):
        key = name[len("face_"):]
        if key.startswith("speaker_r_"):
            return f"mouth-audio correlation of track {key[len('speaker_r_'):]} (speaker policy)"
        return "faces stage: " + FACE_DOCS.get(key, f"quality figure {key!r} (quality.json)")
    return "additional per-sample value"


def pickle_bytes(obj: Any, protocol: int) -> bytes:
    """Pickle with memoisation off, so the bytes depend only on the values (not on which equal strings
    happen to be the same Python object) — the stage-1 files are reproducible byte for byte.

    numpy 2 names its array constructor `numpy._core.multiarray._reconstruct`, which numpy < 1.26 (what
    EmoAva's environment may run) cannot import. With protocol ≤ 3 globals are plain-text GLOBAL opcodes,
    so they are rewritten to `numpy.core.multiarray`, which every numpy (2 included) can load."""
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=protocol)
    p.fast = True
    p.dump(obj)
    data = buf.getvalue()
    return _numpy1_globals(data) if protocol <= 3 else data


def _numpy1_globals(data: bytes) -> bytes:
    out, last = [], 0
    for op, arg, pos in pickletools.genops(data):
        if op.name == "GLOBAL" and arg.startswith("numpy._core."):
            module, name = arg.split(" ", 1)
            out.append(data[last:pos])
            out.append(b"c" + module.replace("numpy._core.", "numpy.core.", 1).encode() + b"\n" + name.encode() + b"\n")
            last = pos + 1 + len(module) + 1 + len(name) + 1
    out.append(data[last:])
    return b"".join(out)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def split_order(df: pd.DataFrame) -> pd.DataFrame:
    """The canonical row order: split (train, dev, test), then source, video, start, id."""
    key = df["split"].map({s: i for i, s in enumerate(SPLITS)})
    if key.isna().any():
        bad = sorted(set(df.loc[key.isna(), "split"]))
        raise ValueError(f"samples table: column 'split' has values {bad}, expected {SPLITS}")
    out = df.assign(_k=key).sort_values(["_k", "source_id", "video_id", "start", "end", "sample_id"],
                                        kind="mergesort")
    return out.drop(columns="_k").reset_index(drop=True)


def train_stats(df: pd.DataFrame, D: int, floor: float) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Per-dimension mean/std over the pooled frames of the train split (EmoAva's normalisation).

    Returns (mean, std, warnings, basis). With no train samples the statistics fall back to all frames
    and a warning says so: a model normalised on its test data must not pass unnoticed."""
    warnings: list[str] = []
    tr = df[df["split"] == "train"]
    basis = "train"
    if tr.empty:
        basis = "all" if not df.empty else "none"
        warnings.append("the train split is empty: stage1_mean/std were computed over "
                        + ("all splits' frames (normalisation leaks evaluation data)" if not df.empty
                           else "no frames (mean 0, std 1)"))
        tr = df
    if tr.empty:
        return np.zeros(D, np.float32), np.ones(D, np.float32), warnings, basis
    frames = np.concatenate([np.asarray(c, np.float64) for c in tr["codes"]], axis=0)
    mean = frames.mean(axis=0)
    std = np.maximum(frames.std(axis=0), floor)
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
    if not (np.isfinite(mean32).all() and np.isfinite(std32).all()):
        # NaN/inf codes, or values so large their spread overflows float32: a model trained on it is NaN
        bad = int(np.argmax(~(np.isfinite(mean32) & np.isfinite(std32))))
        raise ValueError(f"stage1_mean/std of dim {bad} are not finite (mean {mean[bad]:.4g}, std {std[bad]:.4g}): "
                         f"the {basis} split holds NaN, infinite or overflowing codes")
    return mean32, std32, warnings, basis


def parquet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The Parquet form: codes as list<list<float32>> (one inner list per frame), fixed column order.
    Per-frame face series (face_per_frame_*) and other numeric lists stay lists (list<double>)."""
    out = df.copy()
    out["codes"] = [list(np.ascontiguousarray(c, np.float32)) for c in df["codes"]]
    rest = [c for c in PROVENANCE_COLUMNS if c in out.columns]
    face = sorted(c for c in out.columns if c.startswith("face_"))
    qual = [c for c in QUALITY_COLUMNS if c in out.columns]
    other = sorted(c for c in out.columns if c not in CORE_COLUMNS + qual + rest + face)
    return out[[c for c in CORE_COLUMNS if c in out.columns] + qual + rest + face + other]


def codes_from_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """Back from the Parquet form: codes as (T, D) float32 arrays."""
    out = df.copy()
    out["codes"] = [np.stack(list(c)).astype(np.float32) if len(c) else np.zeros((0, 0), np.float32)
                    for c in df["codes"]]
    return out


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("wordsmile", "numpy", "pandas", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = _repo_version() if pkg == "wordsmile" else "unknown"
    return out


def _repo_version() -> str:
    """wordsmile's version from pyproject.toml when run from a checkout that is not pip-installed."""
    import tomllib

    p = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        return str(tomllib.loads(p.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def write_dataset(out: Path, df: pd.DataFrame, info: dict, protocol: int, std_floor: float) -> dict:
    """Write the stage-1 pickles, statistics, data/{train,validation,test}.parquet and dataset.json into `out`.

    `df` has one row per sample with `codes` as (T, D) float32 arrays; `info` holds the dataset-level
    facts decided by the caller (name, code_space, dims, config, funnel, ...). Returns dataset.json."""
    out = Path(out)
    df = split_order(df)
    D = len(info["dims"])
    counts: dict[str, dict] = {}
    for s in SPLITS:
        part = df[df["split"] == s]
        texts = [str(t) for t in part["text"]]
        exps = [np.ascontiguousarray(c, dtype=np.float32) for c in part["codes"]]
        for e, sid in zip(exps, part["sample_id"]):
            if e.ndim != 2 or e.shape[1] != D:
                raise ValueError(f"sample {sid}: codes have shape {e.shape}, expected (T, {D})")
            if not np.isfinite(e).all():   # a model trained on it is NaN: never written, however it came
                raise ValueError(f"sample {sid}: codes hold NaN or infinite values")
        write_bytes(out / f"{s}_stage1_text.pkl", pickle_bytes(texts, protocol))
        write_bytes(out / f"{s}_stage1_exps.pkl", pickle_bytes(exps, protocol))
        counts[s] = {"samples": len(part), "frames": int(sum(e.shape[0] for e in exps)),
                     "videos": int(part[["source_id", "video_id"]].drop_duplicates().shape[0])}
    mean, std, warnings, basis = train_stats(df, D, std_floor)
    write_bytes(out / "stage1_mean.npy", npy_bytes(mean))
    write_bytes(out / "stage1_std.npy", npy_bytes(std))
    pq = parquet_frame(df)
    write_split_files(out, pq)
    fps_values = sorted({round(float(f), 3) for f in df["fps"]})
    n_frames = df["n_frames"].astype(int) if not df.empty else pd.Series([], dtype=int)
    meta = dict(info)
    meta.update({
        "format_version": FORMAT_VERSION,
        "D": D,
        "fps": float(np.median(df["fps"])) if not df.empty else 0.0,
        "fps_values": fps_values,
        "counts": counts,
        "total": {"samples": int(len(df)), "frames": int(n_frames.sum()),
                  "max_frames_in_data": int(n_frames.max()) if len(n_frames) else 0},
        "stats": {"basis": basis, "std_floor": std_floor, "files": list(STAT_FILES)},
        "columns": list(pq.columns),
        "data_files": {HF_SPLITS[s]: DATA_FILES[s] for s in SPLITS},
        "pickle_protocol": protocol,
        "warnings": list(info.get("warnings", [])) + warnings,
    })
    write_json(out / "dataset.json", meta)
    return meta


def write_split_files(out: Path, pq: pd.DataFrame) -> None:
    """One Parquet file per split, all with the same Arrow schema (an empty split keeps the columns), so
    `datasets.load_dataset(folder)` reads train/validation/test through the card's `configs`."""
    import pyarrow as pa
    import pyarrow.parquet as papq

    from pipeline.atomic import atomic_path

    pq = pq.copy()
    words = pq.pop("words") if "words" in pq.columns else None
    table = pa.Table.from_pandas(pq, preserve_index=False).replace_schema_metadata(None)
    if words is not None:   # one explicit type: it must not depend on which words happen to be present
        wtype = pa.list_(pa.struct([(n, getattr(pa, t)()) for n, t in WORD_FIELDS]))
        at = list(PROVENANCE_COLUMNS).index("words")
        before = [c for c in PROVENANCE_COLUMNS[:at] if c in table.column_names]
        pos = table.column_names.index(before[-1]) + 1 if before else table.num_columns
        table = table.add_column(pos, pa.field("words", wtype), pa.array([word_structs(w) for w in words], wtype))
    for i, f in enumerate(table.schema):
        # a list column whose lists are all empty (no shot cut in any sample) infers list<null>: give it
        # the type it has when it holds values, so the schema does not depend on the data
        if pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.list_(pa.int64())))
    split = np.asarray(pq["split"], dtype=object) if len(pq) else np.zeros(0, object)
    for s in SPLITS:
        part = table.filter(pa.array(split == s, pa.bool_())) if len(pq) else table
        with atomic_path(Path(out) / DATA_FILES[s]) as tmp:
            papq.write_table(part, tmp, compression="zstd")


def word_structs(value) -> list[dict]:
    """A `words` value as the Parquet's list of structs: from the segment table's JSON text
    ([[word, start, end(, probability)], ...]), from structs read back (a release rewriting a dataset),
    or empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError:
            return []
    out = []
    for w in list(value):
        if isinstance(w, dict):
            out.append({"word": str(w.get("word", "")), "start": float(w["start"]), "end": float(w["end"]),
                        "probability": None if w.get("probability") is None else float(w["probability"])})
        elif isinstance(w, (list, tuple)) and len(w) >= 3:
            p = w[3] if len(w) > 3 else None
            out.append({"word": str(w[0]), "start": float(w[1]), "end": float(w[2]),
                        "probability": None if p is None else float(p)})
    return out


def parquet_paths(dataset_dir: Path) -> dict[str, Path]:
    """split → Parquet file of a dataset folder (format 2), or every split → samples.parquet (format 1)."""
    d = Path(dataset_dir)
    files = {s: d / DATA_FILES[s] for s in SPLITS}
    if all(p.is_file() for p in files.values()):
        return files
    if (d / LEGACY_PARQUET).is_file():
        return {s: d / LEGACY_PARQUET for s in SPLITS}
    missing = [DATA_FILES[s] for s in SPLITS if not files[s].is_file()]
    raise FileNotFoundError(f"{d}: {', '.join(missing)} missing: not a wordsmile dataset folder")


def read_table(dataset_dir: Path, splits=SPLITS, columns: list[str] | None = None) -> pd.DataFrame:
    """The samples of `splits` in the canonical order as stored (codes as lists of per-frame lists)."""
    import pyarrow.parquet as papq

    paths = parquet_paths(dataset_dir)
    parts = []
    for s in splits:
        if s not in paths:
            raise ValueError(f"split {s!r}: choose from {', '.join(SPLITS)}")
        p = paths[s]
        try:
            t = papq.read_table(p, columns=columns).to_pandas()
        except Exception as e:  # a truncated or foreign file: name it
            raise ValueError(f"{p}: unreadable Parquet ({type(e).__name__}: {e})") from None
        if p.name == LEGACY_PARQUET and "split" in t.columns:
            t = t[t["split"] == s]
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)


def read_samples(dataset_dir: Path, splits=SPLITS, columns: list[str] | None = None) -> pd.DataFrame:
    """Every sample of `splits` (default: all) with codes as (T, D) float32 arrays (no unpickling)."""
    df = read_table(dataset_dir, splits, columns)
    return codes_from_parquet(df) if "codes" in df.columns else df


def read_info(dataset_dir: Path) -> dict:
    p = Path(dataset_dir) / "dataset.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: not a wordsmile dataset folder")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


__all__ = ["word_structs", "WORD_FIELDS", "write_dataset", "write_split_files", "read_samples", "read_table", "parquet_paths", "read_info",
           "HF_SPLITS", "DATA_FILES", "column_doc", "pickle_bytes", "train_stats", "split_order", "parquet_frame",
           "codes_from_parquet", "software_versions"]


def content_hash(root: str | Path) -> str:
    """sha256 over the files a model reads from a dataset folder (dataset.json, the samples, the train
    statistics): a checkpoint records it, and resuming on changed data is refused."""
    from pipeline.hashing import sha256_file

    root = Path(root)
    try:
        data = sorted({str(p.relative_to(root)) for p in parquet_paths(root).values()})
    except FileNotFoundError:
        data = [f"{sp}_stage1_{kind}.pkl" for sp in SPLITS for kind in ("text", "exps")]
    h = hashlib.sha256()
    for n in ["dataset.json", *STAT_FILES, *data]:
        if (root / n).exists():
            h.update(f"{n}:{sha256_file(root / n)}\n".encode())
    return h.hexdigest()


def read_train_stat(dataset_dir: str | Path, name: str, D: int) -> np.ndarray:
    """One of STAT_FILES (per-dimension mean or std of the train frames), checked to be a float (D,) array;
    FormatError names the file (`missing` when it is absent). `stat_problems` says what a release needs more."""
    p = Path(dataset_dir) / name
    if not p.is_file():
        raise FormatError(p, "missing", missing=True)
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FormatError(p, f"unreadable ({e})") from None
    if a.shape != (D,) or a.dtype.kind != "f":
        raise FormatError(p, f"{a.dtype} {a.shape}, expected float32 ({D},) (dataset.json field 'D')")
    return a


def stat_problems(name: str, a: np.ndarray) -> list[str]:
    """What is wrong with a read statistics array for a published dataset: EmoAva's files are float32,
    finite, and the std is positive (it divides)."""
    out = []
    if a.dtype != np.float32:
        out.append(f"{a.dtype}, expected float32")
    if not np.isfinite(a).all():
        out.append("has non-finite values")
    elif name == STAT_FILES[1] and (a <= 0).any():
        out.append("has non-positive entries")
    return out
