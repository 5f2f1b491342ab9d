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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.atomic import save_npz

N_POINTS = 478
N_SHAPES = 52
# MediaPipe face-mesh indices that stay put under expressions: nose bridge/tip (1, 4, 5, 6, 168, 195,
# 197), forehead midline (8, 9, 10, 151), eye corners (33, 133, 263, 362), temples/upper cheeks
# (127, 234, 356, 454).
ALIGN_IDX = np.array([1, 4, 5, 6, 8, 9, 10, 33, 127, 133, 151, 168, 195, 197, 234, 263, 356, 362, 454])


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched similarity transforms mapping src (B, K, 3) onto dst (K, 3): returns scale (B,),
    rotation (B, 3, 3), translation (B, 3) with dst ~ s * R @ src + t."""
    mu_s = src.mean(axis=1, keepdims=True)
    mu_d = dst.mean(axis=0, keepdims=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = np.einsum("kj,bki->bji", xd, xs) / src.shape[1]          # (B, 3, 3) = xd^T xs / K
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones((len(src), 3))
    D[:, 2] = d                                                    # no reflections
    R = U @ (D[:, :, None] * Vt)
    var_s = (xs ** 2).sum(axis=(1, 2)) / src.shape[1]
    s = (S * D).sum(axis=1) / np.maximum(var_s, 1e-12)
    t = mu_d[0][None] - s[:, None] * np.einsum("bij,bj->bi", R, mu_s[:, 0])
    return s, R, t


def _apply_sim(pts: np.ndarray, s: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return s[:, None, None] * np.einsum("bij,bkj->bki", R, pts) + t[:, None, :]


def _normalise(ref: np.ndarray) -> np.ndarray:
    ref = ref - ref.mean(axis=0)
    return ref / np.sqrt((ref ** 2).sum(axis=1).mean())


def _rotation_deg(transforms: np.ndarray) -> np.ndarray:
    """Angle (degrees) of each head transform's rotation away from frontal (identity)."""
    R = np.asarray(transforms, np.float64)[:, :3, :3]
    R = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)   # strip per-axis scale
    c = ((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0).clip(-1.0, 1.0)
    return np.degrees(np.arccos(c))


def canonicalise(landmarks: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 478, 3) landmarks -> aligned to `reference` (19, 3) on ALIGN_IDX; also the scale (B,)."""
    L = np.asarray(landmarks, np.float64)
    s, R, t = _umeyama(L[:, ALIGN_IDX], reference)
    return _apply_sim(L, s, R, t), s


def build_reference(landmarks: np.ndarray, iters: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of the rigid subset, unit RMS radius."""
    sub = np.asarray(landmarks, np.float64)[:, ALIGN_IDX]
    ref = _normalise(sub[0])
    for _ in range(iters):
        s, R, t = _umeyama(sub, ref)
        ref = _normalise(_apply_sim(sub, s, R, t).mean(axis=0))
    return ref


@dataclass
class Rig:
    neutral: np.ndarray          # (478, 3) canonical neutral mesh
    W: np.ndarray                # (52, 478, 3) offset per unit score
    b: np.ndarray                # (478, 3) intercept offset
    reference: np.ndarray        # (19, 3) alignment reference on ALIGN_IDX
    alpha: float
    names: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def apply(self, blendshapes: np.ndarray) -> np.ndarray:
        """(T, 52) scores -> (T, 478, 3) landmarks in the canonical head frame."""
        bs = np.asarray(blendshapes, np.float64)
        if bs.ndim != 2 or bs.shape[1] != N_SHAPES:
            raise ValueError(f"Rig.apply: blendshapes have shape {bs.shape}, expected (T, {N_SHAPES})")
        off = np.einsum("tk,kpc->tpc", bs, self.W)
        return (self.neutral + self.b + off).astype(np.float32)

    def canonicalise(self, landmarks: np.ndarray) -> np.ndarray:
        """Align face-pass landmarks (T, 478, 3) into this rig's canonical frame."""
        return canonicalise(landmarks, self.reference)[0].astype(np.float32)

    def save(self, path: str | os.PathLike) -> Path:
        return save_npz(path, neutral=self.neutral.astype(np.float32), W=self.W.astype(np.float32),
                        b=self.b.astype(np.float32), reference=self.reference.astype(np.float64),
                        align_idx=ALIGN_IDX, alpha=np.float64(self.alpha), names=np.array(self.names, dtype=str),
                        figures=np.array(json.dumps(self.figures, sort_keys=True)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Rig":
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable rig file ({e})") from None
        with z:
            for k in ("neutral", "W", "b", "reference", "alpha", "names", "figures", "align_idx"):
                if k not in z.files:
                    raise ValueError(f"{path}: rig file lacks key {k!r}")
            if not np.array_equal(z["align_idx"], ALIGN_IDX):
                raise ValueError(f"{path}: key 'align_idx' differs from this version's alignment subset")
            return cls(z["neutral"], z["W"], z["b"], z["reference"], float(z["alpha"]),
                       [str(n) for n in z["names"]], json.loads(str(z["figures"])))


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
    """Fit on the `track.npz` of several faces-stage cache entries (cfg: ExpressionsConfig)."""
    from extract.expressions.arkit import BLENDSHAPE_NAMES

    lms, trs, bss, vals = [], [], [], []
    for d in faces_dirs:
        p = Path(d) / "track.npz"
        with np.load(p, allow_pickle=False) as z:
            for k in ("landmarks", "transform", "blendshapes", "valid"):
                if k not in z.files:
                    raise ValueError(f"{p}: lacks key {k!r}")
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
