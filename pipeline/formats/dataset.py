"""Writers of the dataset folder: EmoAva stage-1 pickles, train statistics, samples.parquet, dataset.json.

Everything here is a pure function of the samples table, so two builds from the same inputs give
byte-identical stage-1 files and the release command can rewrite a dataset minus excluded samples."""
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

from pipeline.atomic import write_bytes, write_json, write_parquet

FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")   # EmoAva's split names, in file-name order
# Parquet columns every dataset has, in this order; provenance, face_* and others follow.
CORE_COLUMNS = ["sample_id", "split", "text", "codes", "n_frames", "fps", "duration", "valid_ratio",
                "code_space"]
# Per-sample quality columns placed right after the core ones (absent from datasets built before them).
# coverage: the share of the utterance's span (end - start) that the sample's frames cover.
QUALITY_COLUMNS = ["coverage"]
# Segment-table columns copied to Parquet (docs/ARCHITECTURE.md). Local paths (video_path, cache dirs)
# are left out: they mean nothing on another machine and would leak the builder's folder names.
PROVENANCE_COLUMNS = ["source_id", "source_kind", "video_id", "video_hash", "start", "end", "words", "speaker",
                      "emotion", "sentiment", "official_split", "split_method", "url", "title", "uploader",
                      "license", "downloaded_at", "tool_versions", "extractor_versions"]
STAT_FILES = ("stage1_mean.npy", "stage1_std.npy")


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
    """The Parquet form: codes as list<list<float32>> (one inner list per frame), fixed column order."""
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
    """Write the stage-1 pickles, statistics, samples.parquet and dataset.json into `out`.

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
    write_parquet(out / "samples.parquet", pq)
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
        "pickle_protocol": protocol,
        "warnings": list(info.get("warnings", [])) + warnings,
    })
    write_json(out / "dataset.json", meta)
    return meta


def read_samples(dataset_dir: Path) -> pd.DataFrame:
    """samples.parquet with codes as (T, D) float32 arrays (no unpickling involved)."""
    p = Path(dataset_dir) / "samples.parquet"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: not a wordsmile dataset folder")
    return codes_from_parquet(pd.read_parquet(p))


def read_info(dataset_dir: Path) -> dict:
    p = Path(dataset_dir) / "dataset.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: not a wordsmile dataset folder")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


__all__ = ["write_dataset", "read_samples", "read_info", "pickle_bytes", "train_stats", "split_order",
           "parquet_frame", "codes_from_parquet", "software_versions"]


def content_hash(root: str | Path) -> str:
    """sha256 over the files a model reads from a dataset folder (dataset.json, the samples, the train
    statistics): a checkpoint records it, and resuming on changed data is refused."""
    from pipeline.hashing import sha256_file

    root = Path(root)
    names = ["dataset.json", *STAT_FILES]
    if (root / "samples.parquet").exists():
        names.append("samples.parquet")
    else:
        names += [f"{sp}_stage1_{kind}.pkl" for sp in SPLITS for kind in ("text", "exps")]
    h = hashlib.sha256()
    for n in names:
        if (root / n).exists():
            h.update(f"{n}:{sha256_file(root / n)}\n".encode())
    return h.hexdigest()
