"""An expressions-stage cache entry: per-frame codes of one segment.

`codes.npz` (no pickle): `raw` (N, D) float32 as regressed, `smooth` (N, D) float32 after temporal
processing, `valid` (N,) bool (measured from a real face), `filled` (N,) bool (interpolated), `t` (N,)
float64, `fps` () float64. `codes.json`: `code_space`, `dims`, `backend`, `smoothing`, `versions` and
where the codes came from. `extra.npz` (flame53 only): per-frame side outputs (global pose, shape, cam).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import save_npz, write_json
from pipeline.formats import FormatError

CODES_FILE = "codes.npz"
META_FILE = "codes.json"
EXTRA_FILE = "extra.npz"


@dataclass
class Codes:
    codes: np.ndarray          # (T, D) float32: the chosen sequence (smooth or raw)
    valid: np.ndarray          # (T,) bool
    fps: float
    code_space: str
    dims: list[str]
    meta: dict[str, Any] = field(default_factory=dict)   # backend, smoothing, versions (codes.json)
    source: str = ""           # the codes.json path, for messages


def write_codes(entry: str | Path, *, raw, smooth, valid, filled, t, fps: float, meta: dict,
                extra: dict | None = None) -> None:
    entry = Path(entry)
    save_npz(entry / CODES_FILE, raw=raw, smooth=smooth, valid=valid, filled=filled, t=t, fps=np.float64(fps))
    if extra:
        save_npz(entry / EXTRA_FILE, t=t, **extra)
    write_json(entry / META_FILE, meta)


def read_codes(entry: str | Path, use_smoothed: bool = True) -> Codes:
    """The entry's codes, checked: both files present, the array (N, len(dims)), `valid` (N,), fps > 0."""
    d = Path(entry)
    npz, js = d / CODES_FILE, d / META_FILE
    for p in (npz, js):
        if not p.is_file():
            raise FormatError(p, "is missing", missing=True)
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(js, f"not valid JSON ({e})") from None
    for k in ("code_space", "dims"):
        if k not in meta:
            raise FormatError(js, f"field '{k}' is missing")
    key = "smooth" if use_smoothed else "raw"
    try:
        with np.load(npz, allow_pickle=False) as z:
            lacking = [k for k in (key, "valid", "fps") if k not in z.files]
            if lacking:
                raise FormatError(npz, f"array(s) {lacking} missing (has {sorted(z.files)})")
            codes = np.asarray(z[key])
            valid = np.asarray(z["valid"]).astype(bool)
            fps = float(z["fps"])
    except FormatError:
        raise
    except Exception as e:  # zip/npy corruption surfaces as many exception types
        raise FormatError(npz, f"unreadable ({type(e).__name__}: {e})") from None
    dims = list(meta["dims"])
    if codes.ndim != 2 or codes.shape[1] != len(dims):
        raise FormatError(npz, f"'{key}' has shape {codes.shape}, expected (N, {len(dims)}) for the "
                               f"{len(dims)} dims of {js.name}")
    if valid.shape != (codes.shape[0],):
        raise FormatError(npz, f"'valid' has shape {valid.shape}, expected ({codes.shape[0]},)")
    if not np.isfinite(fps) or fps <= 0:
        raise FormatError(npz, f"fps is {fps}")
    return Codes(np.ascontiguousarray(codes, dtype=np.float32), valid, fps, str(meta["code_space"]), dims,
                 {k: meta.get(k) for k in ("backend", "smoothing", "versions")}, str(js))
