"""A faces-stage cache entry: the kept face track and its quality figures.

`track.npz` (np.savez, no pickle): `t` (N,) float64 seconds from the segment start, `box` (N, 4)
float32 x0 y0 x1 y1 in original-video pixels (smoothed), `landmarks` (N, 478, 3) float16, `transform`
(N, 4, 4) float32 head pose, `blendshapes` (N, 52) float32 in `pipeline.codespaces.BLENDSHAPE_NAMES`
order, `valid` (N,) bool (False = gap, interpolated), `fps` () float64.
`crops.npy` (N, 224, 224, 3) uint8: optional DECA-style crops. `quality.json`: the face figures.
An entry whose segment was rejected has `quality.json` but no `track.npz`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.atomic import save_npz, write_json
from pipeline.formats import FormatError

TRACK_FILE = "track.npz"
CROPS_FILE = "crops.npy"
QUALITY_FILE = "quality.json"
TRACK_KEYS = ("t", "box", "landmarks", "transform", "blendshapes", "valid", "fps")
_PER_FRAME = ("box", "landmarks", "transform", "blendshapes", "valid")


def write_track(entry: str | Path, arrays: dict) -> None:
    missing = [k for k in TRACK_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"write_track: arrays lack {missing}")
    save_npz(Path(entry) / TRACK_FILE, **{k: arrays[k] for k in TRACK_KEYS})


def has_track(entry: str | Path) -> bool:
    return (Path(entry) / TRACK_FILE).is_file()


def read_track(entry: str | Path, keys: tuple[str, ...] = TRACK_KEYS) -> dict[str, np.ndarray]:
    """The arrays of an entry's track.npz, checked: every key present, one row per frame, `t` strictly
    increasing, `fps` positive. `keys` reads only some arrays (a landmark-free reader skips 478×3 per frame)."""
    p = Path(entry) / TRACK_FILE
    if not p.is_file():
        raise FormatError(p, "missing (a faces entry without a kept track)", missing=True)
    try:
        with np.load(p, allow_pickle=False) as z:
            lacking = [k for k in TRACK_KEYS if k not in z.files]
            if lacking:
                raise FormatError(p, f"lacks key(s) {lacking}")
            track = {k: z[k] for k in dict.fromkeys(("t", "fps", *keys))}
    except FormatError:
        raise
    except Exception as e:  # zip/npy corruption surfaces as many exception types
        raise FormatError(p, f"unreadable ({type(e).__name__}: {e})") from None
    n = len(track["t"])
    for k in _PER_FRAME:
        if k in track and len(track[k]) != n:
            raise FormatError(p, f"key {k!r} has {len(track[k])} rows, 't' has {n}")
    if n and np.any(np.diff(track["t"]) <= 0):
        raise FormatError(p, "key 't' is not strictly increasing")
    if not float(track["fps"]) > 0:
        raise FormatError(p, f"key 'fps' = {float(track['fps'])} is not positive")
    return track


def write_crops(entry: str | Path, crops: np.ndarray) -> None:
    np.save(Path(entry) / CROPS_FILE, np.asarray(crops, np.uint8))


def read_crops(entry: str | Path, n: int) -> np.ndarray | None:
    """The entry's stored crops (memory-mapped), or None when it has none; checked against `n` frames."""
    p = Path(entry) / CROPS_FILE
    if not p.is_file():
        return None
    crops = np.load(p, mmap_mode="r", allow_pickle=False)
    if crops.shape[0] != n or crops.ndim != 4 or crops.shape[3:] != (3,) or crops.dtype != np.uint8:
        raise FormatError(p, f"shape {crops.shape} {crops.dtype}, expected ({n}, S, S, 3) uint8")
    return crops


def write_quality(entry: str | Path, figures: dict) -> None:
    write_json(Path(entry) / QUALITY_FILE, figures)


def read_quality(entry: str | Path) -> dict:
    """quality.json of an entry; {} when it is missing or unreadable (figures are informative only)."""
    p = Path(entry) / QUALITY_FILE
    try:
        q = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return q if isinstance(q, dict) else {}
