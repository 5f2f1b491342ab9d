"""Temporal processing of per-frame codes: resample to the dataset frame rate, fill short gaps,
smooth. Raw codes, smoothed codes and the masks are all kept.

Masks: `valid` = measured from a real face (after resampling: both neighbouring source frames were
valid); `filled` = a gap of at most `max_gap` frames between valid frames, linearly interpolated.
`usable = valid | filled`; smoothing runs independently on each contiguous usable run, and every
frame that is not usable is NaN in both `raw` and `smooth` (never invented). Smoothed values are
clipped to the code space's value bounds (pipeline/codespaces.py): Savitzky-Golay overshoots on fast real movements
(mouthLowerDown -0.10 from raw codes in [0, 1]), and a value the code space cannot hold is an
artefact of the filter, not an expression."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Two timestamps closer than this share of a frame period are the same frame.
_SAME_FRAME = 1e-3

@dataclass
class TemporalResult:
    t: np.ndarray          # (T,) float64 seconds from segment start
    fps: float
    raw: np.ndarray        # (T, D) float32, NaN where not valid
    smooth: np.ndarray     # (T, D) float32, NaN where not usable
    valid: np.ndarray      # (T,) bool
    filled: np.ndarray     # (T,) bool
    params: dict = field(default_factory=dict)

    @property
    def usable(self) -> np.ndarray:
        return self.valid | self.filled


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of the True runs of a 1-D mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist()))


def resample(t: np.ndarray, values: np.ndarray, valid: np.ndarray, fps_out: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of (N, D) values at times `t` onto a regular grid t[0] + k / fps_out
    (k while <= t[-1]). An output frame is valid when it coincides with a valid source frame or both
    source frames around it are valid."""
    t = np.asarray(t, np.float64)
    values = np.asarray(values, np.float32)
    valid = np.asarray(valid, bool)
    if len(t) == 0:
        return t.copy(), values.copy(), valid.copy()
    if np.any(np.diff(t) <= 0):
        raise ValueError("resample: timestamps must increase strictly")
    n_out = int(math.floor((t[-1] - t[0]) * fps_out + _SAME_FRAME)) + 1
    t_out = t[0] + np.arange(n_out) / fps_out
    r = np.searchsorted(t, t_out, side="left").clip(0, len(t) - 1)
    l = (r - 1).clip(0, len(t) - 1)
    tol = _SAME_FRAME / fps_out
    exact_r = np.abs(t[r] - t_out) <= tol
    exact_l = np.abs(t[l] - t_out) <= tol
    span = np.where(t[r] > t[l], t[r] - t[l], 1.0)
    w = ((t_out - t[l]) / span).clip(0.0, 1.0)
    v = np.where(valid[:, None], values, 0.0)
    out = (1.0 - w)[:, None] * v[l] + w[:, None] * v[r]
    ok = valid[l] & valid[r]
    out = np.where(exact_r[:, None], v[r], np.where(exact_l[:, None], v[l], out))
    ok = np.where(exact_r, valid[r], np.where(exact_l, valid[l], ok))
    out = out.astype(np.float32)
    out[~ok] = np.nan
    return t_out, out, ok


def fill_gaps(values: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate runs of at most `max_gap` invalid frames that have valid frames on both sides.
    Leading/trailing gaps and longer gaps stay NaN. Returns (values, filled mask)."""
    values = np.array(values, np.float32, copy=True)
    valid = np.asarray(valid, bool)
    filled = np.zeros(len(valid), bool)
    if max_gap <= 0:
        return values, filled
    for s, e in runs(~valid):
        if s == 0 or e == len(valid) or e - s > max_gap:
            continue
        a, b = values[s - 1], values[e]
        w = (np.arange(s, e) - (s - 1)) / (e - (s - 1))
        values[s:e] = (1.0 - w)[:, None] * a + w[:, None] * b
        filled[s:e] = True
    return values, filled


def savgol(values: np.ndarray, usable: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay on each usable run; a run shorter than the window uses the largest odd window
    that fits, and one too short for the polynomial is left as it is."""
    from scipy.signal import savgol_filter

    out = np.array(values, np.float32, copy=True)
    for s, e in runs(usable):
        n = e - s
        w = min(window | 1, n if n % 2 else n - 1)
        if w <= order:
            continue
        out[s:e] = savgol_filter(values[s:e].astype(np.float64), w, order, axis=0, mode="interp")
    return out


def _alpha(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


def one_euro(values: np.ndarray, usable: np.ndarray, fps: float, min_cutoff: float, beta: float,
             d_cutoff: float) -> np.ndarray:
    """The one-euro filter (Casiez et al., CHI 2012), causal, per dimension, restarted on each run."""
    out = np.array(values, np.float32, copy=True)
    a_d = _alpha(d_cutoff, fps)
    for s, e in runs(usable):
        x_hat = values[s].astype(np.float64)
        dx_hat = np.zeros_like(x_hat)
        for i in range(s + 1, e):
            x = values[i].astype(np.float64)
            dx_hat = a_d * (x - x_hat) * fps + (1.0 - a_d) * dx_hat
            a = _alpha(min_cutoff + beta * np.abs(dx_hat), fps)
            x_hat = a * x + (1.0 - a) * x_hat
            out[i] = x_hat
    return out


def smoothing_params(cfg, fps: float) -> dict:
    p: dict = {"method": cfg.smoothing, "max_gap": cfg.max_gap, "fps": fps}
    if cfg.smoothing == "savgol":
        p.update(window=cfg.savgol_window | 1, order=cfg.savgol_order)
    elif cfg.smoothing == "one_euro":
        p.update(min_cutoff=cfg.one_euro_min_cutoff, beta=cfg.one_euro_beta, d_cutoff=cfg.one_euro_d_cutoff)
    return p


def process(t: np.ndarray, codes: np.ndarray, valid: np.ndarray, fps_in: float, cfg,
            extra: dict[str, np.ndarray] | None = None, bounds: tuple[float, float] | None = None
            ) -> tuple[TemporalResult, dict[str, np.ndarray]]:
    """Resample (to cfg.fps, or keep fps_in when cfg.fps is 0 or equal), fill gaps, smooth, clip the
    smoothed codes to `bounds` (the code space's value range; None = unbounded).
    `extra` per-frame arrays are resampled and gap-filled the same way (no smoothing)."""
    fps = float(cfg.fps) if cfg.fps else float(fps_in)
    t = np.asarray(t, np.float64)
    same_rate = abs(fps - fps_in) <= _SAME_FRAME * fps and (
        len(t) < 2 or np.allclose(np.diff(t), 1.0 / fps_in, atol=_SAME_FRAME / fps_in * 10))
    extra = extra or {}
    if same_rate:
        t_out = t.copy()
        raw = np.asarray(codes, np.float32).copy()
        ok = np.asarray(valid, bool) & np.isfinite(raw).all(axis=1)
        raw[~ok] = np.nan
        ex = {k: np.asarray(v, np.float32).copy() for k, v in extra.items()}
    else:
        t_out, raw, ok = resample(t, codes, valid, fps)
        ex = {k: resample(t, v, valid, fps)[1] for k, v in extra.items()}
    filled_vals, filled = fill_gaps(raw, ok, cfg.max_gap)
    usable = ok | filled
    params = smoothing_params(cfg, fps)
    if cfg.smoothing == "savgol":
        sm = savgol(filled_vals, usable, params["window"], params["order"])
    elif cfg.smoothing == "one_euro":
        sm = one_euro(filled_vals, usable, fps, params["min_cutoff"], params["beta"], params["d_cutoff"])
    else:
        sm = filled_vals.copy()
    if bounds is not None:
        sm = np.clip(sm, bounds[0], bounds[1])
        params["clipped_to"] = [float(bounds[0]), float(bounds[1])]
    sm[~usable] = np.nan
    ex = {k: fill_gaps(v, ok, cfg.max_gap)[0] for k, v in ex.items()}
    return TemporalResult(t_out, fps, raw, sm.astype(np.float32), ok, filled, params), ex


def trim(res: TemporalResult, extra: dict[str, np.ndarray]) -> tuple[TemporalResult, dict[str, np.ndarray], int, int]:
    """Drop the leading and trailing frames that are not usable; returns the kept [lo, hi) too.
    Interior unusable frames stay (NaN): they are real holes, not edges."""
    idx = np.flatnonzero(res.usable)
    lo, hi = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)
    cut = TemporalResult(res.t[lo:hi], res.fps, res.raw[lo:hi], res.smooth[lo:hi], res.valid[lo:hi],
                         res.filled[lo:hi], res.params)
    return cut, {k: v[lo:hi] for k, v in extra.items()}, lo, hi
