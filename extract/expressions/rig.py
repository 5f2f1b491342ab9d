"""Linear rig for arkit52: 52 blendshape scores -> 478 face-mesh landmarks, fitted per dataset.

Generated arkit52 sequences are only scores; to render them we need a face. The rig is a ridge
regression from the scores to landmark offsets from a neutral mesh, in a canonical head frame:
1. pose normalisation: every frame's landmarks are aligned (similarity Procrustes / Umeyama) on a
   rigid subset (forehead, nose bridge, eye corners, temples: points the expressions barely move)
   to a reference shape, the generalised-Procrustes mean of near-frontal frames (frontal judged from
   the face pass' head transform); the reference has unit RMS radius on that subset;
2. neutral mesh = mean canonical mesh of the least active frames (lowest total blendshape score);
3. offsets = canonical mesh - neutral; W, b = ridge(scores -> offsets).
`Rig.apply(scores (T, 52))` gives (T, 478, 3) landmarks in that canonical frame (x right, y down as
in the image, z away from the camera, unit ~ head radius)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from pipeline.codespaces import BLENDSHAPE_NAMES
from pipeline.formats.rig import (ALIGN_IDX, N_POINTS, N_SHAPES, Rig, apply_similarity, canonicalise,
                                  normalise_shape, umeyama)
from pipeline.formats.track import read_track

def _rotation_deg(transforms: np.ndarray) -> np.ndarray:
    """Angle (degrees) of each head transform's rotation away from frontal (identity)."""
    R = np.asarray(transforms, np.float64)[:, :3, :3]
    R = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)   # strip per-axis scale
    c = ((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0).clip(-1.0, 1.0)
    return np.degrees(np.arccos(c))


def build_reference(landmarks: np.ndarray, iters: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of the rigid subset, unit RMS radius."""
    sub = np.asarray(landmarks, np.float64)[:, ALIGN_IDX]
    ref = normalise_shape(sub[0])
    for _ in range(iters):
        s, R, t = umeyama(sub, ref)
        ref = normalise_shape(apply_similarity(sub, s, R, t).mean(axis=0))
    return ref


def _ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    xm, ym = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - xm, Y - ym
    A = Xc.T @ Xc + alpha * len(X) * np.eye(X.shape[1])   # alpha per frame: independent of dataset size
    W = np.linalg.solve(A, Xc.T @ Yc)
    return W, ym - xm @ W


def _rms(E: np.ndarray) -> float:
    """Per-point Euclidean RMS of (M, 478*3) errors."""
    return float(np.sqrt((E.reshape(len(E), -1, 3) ** 2).sum(axis=2).mean())) if len(E) else float("nan")


def fit_rig(landmarks_list: Sequence[np.ndarray], transforms_list: Sequence[np.ndarray],
            blendshapes_list: Sequence[np.ndarray], alpha: float = 1e-3, *,
            valid_list: Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
            neutral_quantile: float = 0.1, frontal_deg: float = 20.0, max_frames: int = 20000,
            seed: int = 0) -> Rig:
    """Fit the rig on the valid frames of several face tracks (one list entry per segment).

    figures: rmse (fit), baseline_rmse (predicting the mean mesh), r2, and when there are at least
    two segments the same on held-out segments (k-fold by segment), plus rmse_px (rmse times the
    median canonical->pixel scale)."""
    L, T, B, seg = [], [], [], []
    for i, (lm, tr, bs) in enumerate(zip(landmarks_list, transforms_list, blendshapes_list)):
        lm, tr, bs = np.asarray(lm, np.float64), np.asarray(tr, np.float64), np.asarray(bs, np.float64)
        if lm.shape[1:] != (N_POINTS, 3) or bs.shape[1:] != (N_SHAPES,) or tr.shape[1:] != (4, 4):
            raise ValueError(f"fit_rig: segment {i} has landmarks {lm.shape}, transforms {tr.shape}, "
                             f"blendshapes {bs.shape}; expected (N,478,3), (N,4,4), (N,52)")
        ok = np.ones(len(lm), bool) if valid_list is None else np.asarray(valid_list[i], bool).copy()
        ok &= np.isfinite(lm).all(axis=(1, 2)) & np.isfinite(bs).all(axis=1) & np.isfinite(tr).all(axis=(1, 2))
        L.append(lm[ok]), T.append(tr[ok]), B.append(bs[ok]), seg.append(np.full(ok.sum(), i))
    L, T, B, seg = (np.concatenate(a) if a else np.zeros((0,)) for a in (L, T, B, seg))
    if len(L) < N_SHAPES:
        raise ValueError(f"fit_rig: {len(L)} valid frames; at least {N_SHAPES} are needed")
    rng = np.random.default_rng(seed)
    if len(L) > max_frames:
        keep = np.sort(rng.choice(len(L), max_frames, replace=False))
        L, T, B, seg = L[keep], T[keep], B[keep], seg[keep]

    frontal = _rotation_deg(T) <= frontal_deg
    ref_src = L[frontal] if frontal.sum() >= 3 else L
    reference = build_reference(ref_src[rng.permutation(len(ref_src))[:2000]])
    C, scale = canonicalise(L, reference)
    activity = B[:, 1:].sum(axis=1)                                   # column 0 is `_neutral`
    calm = activity <= np.quantile(activity, neutral_quantile)
    neutral = C[calm].mean(axis=0)
    Y = (C - neutral).reshape(len(C), -1)

    W, b = _ridge(B, Y, alpha)
    fit_err = Y - (B @ W + b)
    base_err = Y - Y.mean(axis=0)
    figures = {"n_frames": int(len(C)), "n_segments": int(len(np.unique(seg))), "alpha": alpha,
               "rmse": _rms(fit_err), "baseline_rmse": _rms(base_err),
               "r2": float(1.0 - (fit_err ** 2).sum() / max((base_err ** 2).sum(), 1e-30)),
               "px_per_unit": float(np.median(1.0 / np.maximum(scale, 1e-12))),
               "n_frontal": int(frontal.sum()), "n_neutral": int(calm.sum())}
    figures["rmse_px"] = figures["rmse"] * figures["px_per_unit"]
    segs = np.unique(seg)
    if len(segs) >= 2:  # held-out error: k-fold over whole segments, so no frame of a test clip is seen
        folds = np.array_split(rng.permutation(segs), min(5, len(segs)))
        e_fit, e_base = [], []
        for f in folds:
            test = np.isin(seg, f)
            Wf, bf = _ridge(B[~test], Y[~test], alpha)
            e_fit.append(Y[test] - (B[test] @ Wf + bf))
            e_base.append(Y[test] - Y[~test].mean(axis=0))
        figures["holdout_rmse"] = _rms(np.concatenate(e_fit))
        figures["holdout_baseline_rmse"] = _rms(np.concatenate(e_base))
    return Rig(neutral, W.reshape(N_SHAPES, N_POINTS, 3), b.reshape(N_POINTS, 3), reference, float(alpha),
               list(names) if names is not None else [], figures)


def fit_rig_from_faces(faces_dirs: Sequence[str | os.PathLike], cfg) -> Rig:
    """Fit on the tracks of several faces-stage cache entries (cfg: ExpressionsConfig)."""
    lms, trs, bss, vals = [], [], [], []
    for d in faces_dirs:
        z = read_track(d, keys=("landmarks", "transform", "blendshapes", "valid"))
        lms.append(z["landmarks"].astype(np.float32)), trs.append(z["transform"])
        bss.append(z["blendshapes"]), vals.append(z["valid"])
    return fit_rig(lms, trs, bss, cfg.rig_alpha, valid_list=vals, names=BLENDSHAPE_NAMES,
                   neutral_quantile=cfg.rig_neutral_quantile, frontal_deg=cfg.rig_frontal_deg,
                   max_frames=cfg.rig_max_frames)


def fit_rig_from_entries(faces_dirs: Sequence[str | os.PathLike], dest: str | os.PathLike, cfg) -> Rig | None:
    """Fit on faces entries and save to `dest` (the build's call). `cfg` is the Config or its
    `expressions` section. Returns None, writing nothing, when the entries hold fewer valid frames
    than the rig has inputs (a tiny dataset): there is then no rig to ship."""
    import logging

    section = getattr(cfg, "expressions", cfg)
    try:
        rig = fit_rig_from_faces(faces_dirs, section)
    except ValueError as e:
        if "at least" not in str(e):
            raise
        logging.getLogger("wordsmile.expressions.rig").warning("no arkit52 rig: %s", e)
        return None
    rig.save(dest)
    return rig
