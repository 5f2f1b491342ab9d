"""`rig.npz`: the arkit52 linear rig a dataset ships (52 blendshape scores -> 478 face-mesh landmarks in a
canonical head frame), fitted by extract/expressions/rig.py and read by the renderer.

Keys: `neutral` (478, 3), `W` (52, 478, 3), `b` (478, 3), `reference` (19, 3) on `align_idx`, `alpha`,
`names` (52,), `figures` (JSON text of the fit figures). No pickle."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.atomic import save_npz

RIG_FILE = "rig.npz"
N_POINTS = 478
N_SHAPES = 52
# MediaPipe face-mesh indices that stay put under expressions: nose bridge/tip (1, 4, 5, 6, 168, 195,
# 197), forehead midline (8, 9, 10, 151), eye corners (33, 133, 263, 362), temples/upper cheeks
# (127, 234, 356, 454).
ALIGN_IDX = np.array([1, 4, 5, 6, 8, 9, 10, 33, 127, 133, 151, 168, 195, 197, 234, 263, 356, 362, 454])


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def apply_similarity(pts: np.ndarray, s: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return s[:, None, None] * np.einsum("bij,bkj->bki", R, pts) + t[:, None, :]


def normalise_shape(ref: np.ndarray) -> np.ndarray:
    ref = ref - ref.mean(axis=0)
    return ref / np.sqrt((ref ** 2).sum(axis=1).mean())


def canonicalise(landmarks: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 478, 3) landmarks -> aligned to `reference` (19, 3) on ALIGN_IDX; also the scale (B,)."""
    L = np.asarray(landmarks, np.float64)
    s, R, t = umeyama(L[:, ALIGN_IDX], reference)
    return apply_similarity(L, s, R, t), s


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
