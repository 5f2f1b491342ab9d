"""Quality figures of a face track and the checks that reject a segment.

Head pose comes from the rotation part of the landmarker's facial transformation matrix (the
translation is relative to the crop, so it is not used). Sharpness is the variance of the Laplacian
of the gray 256² landmarker crop's face part: small or out-of-focus faces, upsampled, score low.
Jitter is the landmarks' median deviation from their own 5-frame running median, relative to face
size: real expression motion is smooth and barely deviates, tracking noise does. Coverage is the
span of the utterance the kept face covers (first to last frame with landmarks): what the expression
stage keeps after trimming the ends. Off-frame share: per frame, the larger of the share of the face
box's area and the share of the 478 landmarks that lie outside the picture.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from pipeline.records import Reason


def euler_deg(transform: np.ndarray) -> np.ndarray:
    """(n, 3) yaw, pitch, roll in degrees from (n, 4, 4) transforms (R = Rz(roll)·Ry(yaw)·Rx(pitch))."""
    R = np.asarray(transform, np.float64)[..., :3, :3]
    # remove any scale the matrix carries
    R = R / np.linalg.norm(R, axis=-2, keepdims=True).clip(1e-9)
    pitch = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    yaw = np.arctan2(-R[..., 2, 0], np.hypot(R[..., 2, 1], R[..., 2, 2]))
    roll = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def face_sizes(box: np.ndarray) -> np.ndarray:
    b = np.asarray(box, np.float64)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def jitter(landmarks: np.ndarray, valid: np.ndarray, sizes: np.ndarray) -> float:
    """Median over valid frames of mean |landmark − 5-frame running median| / face size."""
    idx = np.flatnonzero(valid)
    if len(idx) < 5:
        return 0.0
    xy = np.asarray(landmarks[idx, :, :2], np.float32)
    dev = np.empty(len(idx))
    # in chunks (with the filter's 2-frame reach on each side): a 10-minute track stays small
    step = 1024
    for s in range(0, len(idx), step):
        a, b = max(0, s - 2), min(len(idx), s + step + 2)
        med = median_filter(xy[a:b], size=(5, 1, 1), mode="nearest")
        d = np.linalg.norm(xy[a:b] - med, axis=-1).mean(axis=1)
        e = min(s + step, len(idx))
        dev[s:e] = d[s - a:e - a]
    dev /= np.maximum(sizes[idx], 1.0)
    # runs across a gap are not adjacent frames: ignore the frames next to gaps
    ok = np.ones(len(idx), bool)
    jumps = np.flatnonzero(np.diff(idx) > 1)
    for j in jumps:
        ok[max(0, j - 1):j + 3] = False
    return float(np.median(dev[ok])) if ok.any() else float(np.median(dev))


def outside_share(box: np.ndarray, landmarks: np.ndarray, size: tuple) -> np.ndarray:
    """(n,) per frame: max(share of the box area outside the w x h picture, share of landmarks outside)."""
    w, h = size
    b = np.asarray(box, np.float64)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    inside = (np.clip(np.minimum(b[:, 2], w) - np.maximum(b[:, 0], 0), 0, None)
              * np.clip(np.minimum(b[:, 3], h) - np.maximum(b[:, 1], 0), 0, None))
    box_out = 1.0 - inside / area
    xy = np.asarray(landmarks[..., :2], np.float32)
    lm_out = ((xy[..., 0] < 0) | (xy[..., 0] > w) | (xy[..., 1] < 0) | (xy[..., 1] > h)).mean(axis=1)
    return np.maximum(box_out, lm_out)


def coverage(d: dict, n: int, lead: int = 0, n_span: int | None = None) -> tuple[float, int, int]:
    """(share of the utterance from the first to the last valid frame, first, last). first/last are
    frame indices on the utterance's own grid of `n_span` frame periods; `lead` is the grid index of the
    first analysed frame. Measured against the utterance, not the n frames decoded: frames the media
    does not have at either edge (a video that starts late, a decode that lost its first frames) count
    as not covered."""
    n_span = n if n_span is None else n_span
    idx = np.flatnonzero(d["valid"])
    if not len(idx) or not n_span:
        return 0.0, 0, -1
    first, last = max(0, int(idx[0]) + lead), min(n_span - 1, int(idx[-1]) + lead)
    return float(max(0, last - first + 1) / n_span), first, last


def figures(d: dict, n: int, scale: float, size: tuple | None = None, fps: float = 25.0,
            max_outside: float = 0.05, lead: int = 0, n_span: int | None = None) -> dict:
    """Quality figures of one dense track (see tracks.dense) over a segment of n analysed frames. Sizes
    are in original pixels (analysis px / scale); `size` = (w, h) of the analysed frames; `lead`,
    `n_span`: where the analysed frames lie on the utterance's grid (see coverage)."""
    v = d["valid"]
    sizes = face_sizes(d["box"]) / scale
    ypr = euler_deg(d["transform"][v]) if v.any() else np.zeros((0, 3))
    sharp = d["sharpness"][v]
    q = {
        "n_frames": int(n),
        "n_valid": int(v.sum()),
        "n_bridged": int(d["bridged"].sum()),
        "presence": round(float(v.mean()) if n else 0.0, 4),
        "face_px_median": round(float(np.median(sizes[v])) if v.any() else 0.0, 1),
        "face_px_min": round(float(np.min(sizes[v])) if v.any() else 0.0, 1),
        # what the landmarker saw: the size check uses this (docs/faces.md "Minimum face size")
        "face_px_analysed_median": round(float(np.median(sizes[v] * scale)) if v.any() else 0.0, 1),
        "sharpness_median": round(float(np.median(sharp)) if len(sharp) else 0.0, 2),
        "jitter_median": round(jitter(d["landmarks"], v, face_sizes(d["box"])), 5),
    }
    cov, first, last = coverage(d, n, lead, n_span)
    q.update(coverage=round(cov, 4), covered_from_s=round(first / fps, 3), covered_to_s=round((last + 1) / fps, 3))
    jumps = d.get("identity_jump")
    if jumps is not None and v.any():
        q["identity_jump_max"] = round(float(np.nanmax(np.where(v, jumps, np.nan))), 4)
    if size and v.any():
        out = outside_share(d["box"][v], d["landmarks"][v], size)
        q.update(outside_median=round(float(np.median(out)), 4), outside_max=round(float(out.max()), 4),
                 off_frame_share=round(float((out > max_outside).mean()), 4))
    for k, name in enumerate(("yaw", "pitch", "roll")):
        col = ypr[:, k] if len(ypr) else np.zeros(1)
        q[f"{name}_median"] = round(float(np.median(col)), 2)
        q[f"{name}_abs_median"] = round(float(np.median(np.abs(col))), 2)
        q[f"{name}_abs_max"] = round(float(np.max(np.abs(col))), 2)
    return q


def per_frame(d: dict, scale: float, size: tuple | None = None) -> dict:
    """Per-frame series for quality.json (None where the track has no measured landmarks)."""
    v = d["valid"]
    ypr = euler_deg(d["transform"])
    series = {"face_px": face_sizes(d["box"]) / scale, "sharpness": d["sharpness"],
              "yaw": ypr[:, 0], "pitch": ypr[:, 1], "roll": ypr[:, 2]}
    out = {k: [round(float(x), 1) if ok else None for x, ok in zip(arr, v)] for k, arr in series.items()}
    if size:
        o = outside_share(d["box"], d["landmarks"], size)
        out["outside"] = [round(float(x), 3) if ok else None for x, ok in zip(o, v)]
    if "identity_jump" in d:
        out["identity_jump"] = [round(float(x), 3) if ok else None for x, ok in zip(d["identity_jump"], v)]
    return out


def check(q: dict, cfg) -> tuple[Reason, str] | None:
    """The first failed quality check as (reason, detail naming the figure), or None. Causes come
    before their symptoms: a face cut by the frame edge or too small also loses landmarks."""
    if q.get("off_frame_share", 0.0) > cfg.max_outside_frames:
        return Reason.OFF_FRAME, (f"face cut by the frame edge in {q['off_frame_share']:.0%} of its frames "
                                  f"(> max_outside {cfg.max_outside:.0%} of box or landmarks outside; median "
                                  f"{q['outside_median']:.0%}), above max_outside_frames {cfg.max_outside_frames:.0%}")
    if q["face_px_analysed_median"] < cfg.keep_min_px:
        return Reason.FACE_TOO_SMALL, (f"median face size {q['face_px_analysed_median']:.0f} px as analysed "
                                       f"({q['face_px_median']:.0f} px in the source), "
                                       f"below keep_min_px {cfg.keep_min_px}")
    if q["n_valid"] < cfg.min_track_frames:
        return Reason.TOO_SHORT, (f"face track has landmarks in {q['n_valid']} frames, "
                                  f"below min_track_frames {cfg.min_track_frames}")
    if q["presence"] < cfg.min_presence:
        return Reason.LOW_PRESENCE, (f"kept face present in {q['presence']:.0%} of {q['n_frames']} frames, "
                                     f"below min_presence {cfg.min_presence:.0%}")
    if q.get("coverage", 1.0) < cfg.min_coverage:
        return Reason.LOW_COVERAGE, (f"kept face covers {q['coverage']:.0%} of the utterance "
                                     f"({q['covered_from_s']:.2f}-{q['covered_to_s']:.2f} s of "
                                     f"{q['n_frames']} frames), "
                                     f"below min_coverage {cfg.min_coverage:.0%}")
    for name, lim in (("yaw", cfg.max_abs_yaw), ("pitch", cfg.max_abs_pitch), ("roll", cfg.max_abs_roll)):
        if q[f"{name}_abs_median"] > lim:
            return Reason.HEAD_POSE, (f"median |{name}| {q[f'{name}_abs_median']:.0f} deg, "
                                      f"above max_abs_{name} {lim:.0f}")
    if q["sharpness_median"] < cfg.min_sharpness:
        return Reason.BLURRY, (f"median crop sharpness {q['sharpness_median']:.1f}, "
                               f"below min_sharpness {cfg.min_sharpness}")
    if q["jitter_median"] > cfg.max_jitter:
        return Reason.JITTER, (f"median landmark jitter {q['jitter_median']:.3f} of face size, "
                               f"above max_jitter {cfg.max_jitter}")
    return None
