"""The expressions stage: one faces-stage entry (a kept face track) -> per-frame codes.

Reads the track (and the stored crops when present) of the faces cache entry, runs the configured
backend, resamples/fills/smooths (temporal.py) and writes a cache entry of stage `expressions` in the
codes format (pipeline/formats/codes.py). The key is the faces entry's key (its folder name) + this stage's parameters + code
version + the backend's model fingerprint, so changing the backend or the smoothing misses only here."""
from __future__ import annotations

import json
import traceback
from pathlib import Path

import numpy as np

from extract.expressions import temporal
from extract.expressions.backends import get_backend
from extract.expressions.base import Backend, ExpressionsSetupError
from pipeline.formats import FormatError
from pipeline.formats.codes import write_codes
from pipeline.formats.track import CROPS_FILE, TRACK_FILE, read_crops, read_track
from pipeline.records import ItemError, Reason, Record, ok, skipped
from pipeline.stage import Stage

STAGE = "expressions"
CODE_VERSION = "1"


def track_crops(seg: dict, faces_dir: Path, track: dict, cfg, log) -> tuple[np.ndarray, np.ndarray, str]:
    """(N, S, S, 3) uint8 DECA crops for the track frames, a mask of frames that got a crop, and
    where they came from. `crops.npy` of the faces entry when present, else decode + crop."""
    n, size = len(track["t"]), cfg.crop_size
    stored = read_crops(faces_dir, n)
    if stored is not None:
        return np.asarray(stored), np.ones(n, bool), CROPS_FILE
    from extract.faces.crops import crop_frames, deca_crop_box  # the geometry the faces stage uses too
    from pipeline.media import decode

    lm = track["landmarks"][..., :2].astype(np.float32)
    boxes = np.array([deca_crop_box(x, cfg.crop_scale) for x in lm], np.float64).reshape(n, 3)  # cx, cy, side
    fps = float(track["fps"])
    t_abs = float(seg["start"]) + np.asarray(track["t"], np.float64)
    crops = np.zeros((n, size, size, 3), np.uint8)
    got = np.zeros(n, bool)
    for fb in decode(seg["video_path"], float(seg["start"]), float(seg["end"]), fps=fps,
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


class ExpressionsStage(Stage):
    """One kept face track -> per-frame codes in the configured backend's code space."""

    name, code_version, section = STAGE, CODE_VERSION, "expressions"

    def precheck(self, seg: dict, ctx) -> Record | None:
        sid, faces_dir = self.item_id(seg), seg.get("faces_dir") or ""
        if not faces_dir or not (Path(faces_dir) / "DONE").exists():
            return skipped(STAGE, sid, Reason.UPSTREAM, f"no finished faces entry for segment {sid} ({faces_dir})")
        rec_path = Path(faces_dir) / "record.json"
        if rec_path.is_file():
            up = Record.load(rec_path)
            if not up.ok:
                return skipped(STAGE, sid, Reason.UPSTREAM, f"faces stage {up.status.value}: {up.reason.value}")
        return None

    def key_inputs(self, seg: dict, ctx) -> tuple:
        # the faces entry's key (its folder name) stands for the track; the backend's model file for the weights
        cfg = ctx.cfg.expressions
        return Path(seg["faces_dir"]).name, _fingerprint(get_backend(cfg.backend, cfg), cfg)

    def process(self, seg: dict, ctx, out: Path) -> Record:
        sid, cfg = self.item_id(seg), ctx.cfg.expressions
        faces_dir = Path(seg["faces_dir"])
        backend = get_backend(cfg.backend, cfg)
        try:
            track = read_track(faces_dir)
        except FormatError as e:
            raise ItemError(Reason.MISSING_FILE if e.missing else Reason.BACKEND_ERROR, str(e)) from None
        crops_src = ""
        try:
            if backend.needs_crops:
                crops, got, crops_src = track_crops(seg, faces_dir, track, cfg, ctx.log)
                track = {**track, "valid": np.asarray(track["valid"], bool) & got}
                res = backend.encode(track, crops)
            else:
                res = backend.encode(track)
        except (ExpressionsSetupError, ItemError):
            raise
        except FormatError as e:
            raise ItemError(Reason.BACKEND_ERROR, str(e)) from None
        except Exception as e:  # a backend crash on this item (e.g. CUDA OOM): not cached, reported
            tail = "".join(traceback.format_exception_only(type(e), e)).strip()
            raise ItemError(Reason.BACKEND_ERROR, f"{backend.name} on {faces_dir.name}: {tail}") from None
        if not res.valid.any():
            return skipped(STAGE, sid, Reason.NO_CODES, f"{backend.name}: no frame of {faces_dir / TRACK_FILE} "
                           f"gave codes ({len(res.valid)} frames)", n_frames=int(len(res.valid)))
        fps_in = float(track["fps"])
        tp, extra = temporal.process(track["t"], res.codes, res.valid, fps_in, cfg, res.extra)
        n_all = len(tp.t)
        lo, hi = 0, n_all
        if cfg.trim_ends:
            tp, extra, lo, hi = temporal.trim(tp, extra)
        write_codes(out, raw=tp.raw, smooth=tp.smooth, valid=tp.valid, filled=tp.filled, t=tp.t, fps=tp.fps,
                    extra=extra, meta={**backend.describe(), "smoothing": tp.params, "versions": backend.versions(),
                                       "source_fps": fps_in, "crops": crops_src, "faces_entry": faces_dir.name,
                                       "stage_code_version": CODE_VERSION})
        n = len(tp.t)
        return ok(STAGE, sid, n_frames=int(n), n_valid=int(tp.valid.sum()), n_filled=int(tp.filled.sum()),
                  valid_ratio=float(tp.valid.mean()) if n else 0.0,
                  usable_ratio=float(tp.usable.mean()) if n else 0.0, fps=tp.fps, code_space=backend.code_space,
                  D=backend.D, n_trim_start=int(lo), n_trim_end=int(n_all - hi),
                  n_unusable_inside=int((~tp.usable).sum()))


EXPRESSIONS = ExpressionsStage()
