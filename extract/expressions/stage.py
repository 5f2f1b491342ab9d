"""The expressions stage: one faces-stage entry (a kept face track) -> per-frame codes.

Reads `track.npz` (and `crops.npy` when present) of the faces cache entry, runs the configured
backend, resamples/fills/smooths (temporal.py) and writes a cache entry of stage `expressions`:
`codes.npz` (raw, smooth, valid, filled, t, fps), `codes.json`, `extra.npz` (flame53) and
`record.json`. The key is the faces entry's key (its folder name) + this stage's parameters + code
version + the backend's model fingerprint, so changing the backend or the smoothing misses only here."""
from __future__ import annotations

import json
import traceback
from pathlib import Path

import numpy as np

from extract.expressions import temporal
from extract.expressions.base import Backend, ExpressionsSetupError, get_backend
from pipeline.atomic import save_npz, write_json
from pipeline.context import StageContext
from pipeline.records import Reason, Record, failed, ok, skipped

STAGE = "expressions"
CODE_VERSION = "2"
TRACK_KEYS = ("t", "box", "landmarks", "transform", "blendshapes", "valid", "fps")


class TrackError(ValueError):
    pass


def load_track(faces_dir: Path) -> dict[str, np.ndarray]:
    p = Path(faces_dir) / "track.npz"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: missing (faces entry without a track)")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in TRACK_KEYS if k not in z.files]
            if missing:
                raise TrackError(f"{p}: lacks key(s) {missing}")
            track = {k: z[k] for k in z.files}
    except TrackError:
        raise
    except Exception as e:  # zip/npy corruption surfaces as many exception types
        raise TrackError(f"{p}: unreadable ({type(e).__name__}: {e})") from None
    n = len(track["t"])
    for k in ("box", "landmarks", "transform", "blendshapes", "valid"):
        if len(track[k]) != n:
            raise TrackError(f"{p}: key {k!r} has {len(track[k])} rows, 't' has {n}")
    if n and np.any(np.diff(track["t"]) <= 0):
        raise TrackError(f"{p}: key 't' is not strictly increasing")
    if not float(track["fps"]) > 0:
        raise TrackError(f"{p}: key 'fps' = {float(track['fps'])} is not positive")
    return track


def track_crops(seg: dict, faces_dir: Path, track: dict, cfg, log) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, S, S, 3) uint8 DECA crops for the track frames, a mask of frames that got a crop, and
    where they came from. `crops.npy` of the faces entry when present, else decode + crop."""
    n, size = len(track["t"]), cfg.crop_size
    p = Path(faces_dir) / "crops.npy"
    if p.is_file():
        crops = np.load(p, mmap_mode="r", allow_pickle=False)
        if crops.shape[0] != n or crops.shape[3:] != (3,) or crops.dtype != np.uint8:
            raise TrackError(f"{p}: shape {crops.shape} {crops.dtype}, expected ({n}, S, S, 3) uint8")
        return np.asarray(crops), np.ones(n, bool), "crops.npy"
    from extract.faces.crops import crop_frames, deca_crop_box  # the geometry the faces stage uses too
    from pipeline.media import decode

    lm = track["landmarks"][..., :2].astype(np.float32)
    boxes = np.array([deca_crop_box(x, cfg.crop_scale) for x in lm], np.float64).reshape(n, 3)  # cx, cy, side
    fps = float(track["fps"])
    t_abs = float(seg["start"]) + np.asarray(track["t"], np.float64)
    crops = np.zeros((n, size, size, 3), np.uint8)
    got = np.zeros(n, bool)
    # from a frame early: the faces stage's grid may include a frame at the very start that a decode
    # seeking to the start exactly would drop (ffmpeg's fps filter); frames are matched by time
    for fb in decode(seg["video_path"], max(0.0, float(seg["start"]) - 1.0 / fps), float(seg["end"]), fps=fps,
                     max_side=cfg.decode_max_side or None):
        j = np.searchsorted(t_abs, fb.t).clip(0, max(n - 1, 0))
        jl = (j - 1).clip(0, max(n - 1, 0))
        j = np.where(np.abs(t_abs[jl] - fb.t) < np.abs(t_abs[j] - fb.t), jl, j)
        near = (np.abs(t_abs[j] - fb.t) <= 0.5 / fps) & np.isfinite(boxes[j]).all(axis=1)
        if not near.any():
            continue
        sel = np.flatnonzero(near)
        crops[j[sel]] = crop_frames(fb.frames[sel], boxes[j[sel]] * fb.scale, size)
        got[j[sel]] = True
    if (~got).any():
        log.info("%s: %d of %d track frames had no decoded frame", seg.get("segment_id", "?"), (~got).sum(), n)
    return crops, got, "decoded"


def _fingerprint(backend: Backend, cfg) -> str:
    if backend.code_space == "flame53":  # the chosen checkpoint file, without loading it
        from extract.expressions.emoca import find_checkpoint

        ck = find_checkpoint(Path(cfg.emoca_path).expanduser(), cfg.emoca_stage, cfg.emoca_checkpoint)
        st = ck.stat()
        return f"{ck.name}:{st.st_size}:{int(st.st_mtime)}"
    return json.dumps(backend.versions(), sort_keys=True)


def process_segment(seg: dict, faces_dir: Path | None, ctx: StageContext) -> Record:
    sid = str(seg.get("segment_id", ""))
    cfg = ctx.cfg.expressions
    if faces_dir is None or not (Path(faces_dir) / "DONE").exists():
        return skipped(STAGE, sid, Reason.UPSTREAM, f"no finished faces entry for segment {sid} ({faces_dir})")
    faces_dir = Path(faces_dir)
    rec_path = faces_dir / "record.json"
    if rec_path.is_file():
        up = Record.load(rec_path)
        if not up.ok:
            return skipped(STAGE, sid, Reason.UPSTREAM, f"faces stage {up.status.value}: {up.reason.value}")

    backend = get_backend(cfg.backend, cfg)  # setup errors (no EMOCA path) raise: they concern every item
    cache = ctx.cache(STAGE, CODE_VERSION, cfg.model_dump(mode="json"))
    key = cache.key(faces_dir.name, _fingerprint(backend, cfg))
    hit = cache.get(key)
    if hit is not None:
        rec = Record.load(hit / "record.json")
        rec.item_id = sid   # an entry is shared by segments with the same faces entry
        rec.output = str(hit) if rec.ok else ""
        return rec

    try:
        track = load_track(faces_dir)
    except FileNotFoundError as e:
        return failed(STAGE, sid, Reason.MISSING_FILE, str(e))
    except TrackError as e:
        return failed(STAGE, sid, Reason.BACKEND_ERROR, str(e))

    crops_src = ""
    try:
        if backend.needs_crops:
            crops, got, crops_src = track_crops(seg, faces_dir, track, cfg, ctx.log)
            track = {**track, "valid": np.asarray(track["valid"], bool) & got}
            out = backend.encode(track, crops)
        else:
            out = backend.encode(track)
    except TrackError as e:
        return failed(STAGE, sid, Reason.BACKEND_ERROR, str(e))
    except ExpressionsSetupError:  # a model folder/config problem concerns every item: stop the run
        raise
    except Exception as e:  # a backend crash on this item (e.g. CUDA OOM): not cached, reported
        tail = "".join(traceback.format_exception_only(type(e), e)).strip()
        return failed(STAGE, sid, Reason.BACKEND_ERROR, f"{backend.name} on {faces_dir.name}: {tail}")

    fps_in = float(track["fps"])
    with cache.put(key) as tmp:
        if not out.valid.any():
            rec = skipped(STAGE, sid, Reason.NO_CODES, f"{backend.name}: no frame of {faces_dir / 'track.npz'} "
                          f"gave codes ({len(out.valid)} frames)", n_frames=int(len(out.valid)))
        else:
            res, extra = temporal.process(track["t"], out.codes, out.valid, fps_in, cfg, out.extra,
                                          bounds=temporal.value_bounds(backend.code_space))
            n_all = len(res.t)
            lo, hi = 0, n_all
            if cfg.trim_ends:
                res, extra, lo, hi = temporal.trim(res, extra)
            save_npz(tmp / "codes.npz", raw=res.raw, smooth=res.smooth, valid=res.valid, filled=res.filled,
                     t=res.t, fps=np.float64(res.fps))
            if extra:
                save_npz(tmp / "extra.npz", t=res.t, **extra)
            write_json(tmp / "codes.json", {
                **backend.describe(), "smoothing": res.params, "versions": backend.versions(),
                "source_fps": fps_in, "crops": crops_src, "faces_entry": faces_dir.name,
                "stage_code_version": CODE_VERSION})
            n = len(res.t)
            rec = ok(STAGE, sid, output=str(cache.path(key)), n_frames=int(n), n_valid=int(res.valid.sum()),
                     n_filled=int(res.filled.sum()), valid_ratio=float(res.valid.mean()) if n else 0.0,
                     usable_ratio=float(res.usable.mean()) if n else 0.0, fps=res.fps,
                     code_space=backend.code_space, D=backend.D, n_trim_start=int(lo),
                     n_trim_end=int(n_all - hi), n_unusable_inside=int((~res.usable).sum()))
        write_json(tmp / "record.json", rec.to_json())
    rec.output = str(cache.path(key)) if rec.ok else ""
    return rec
