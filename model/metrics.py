"""Evaluation metrics for generated expression sequences.

Continuous perplexity is EmoAva's (evaluate.py), computed in closed form: per frame
p = max(Φ_D(y+δ) − Φ_D(y−δ), 1e-10) with Φ_D the joint CDF of N(ŷ, σ²I); for a diagonal covariance
the joint CDF is a product of 1-D CDFs, so p = Π_d Φ((y_d−ŷ_d+δ)/σ) − Π_d Φ((y_d−ŷ_d−δ)/σ)
(evaluated in log space). Note this is the difference of the CDF at two corners, *not* the
probability of the box [y−δ, y+δ]; that true box probability Π_d [Φ(a_d) − Φ(b_d)] is reported
beside it. H_i = −mean_j log₂ p_ij, PPL = 2^(mean_i H_i).

Generated and real sequences differ in length: frame j of the real sequence is compared with frame j
of the generated one, and a generated sequence shorter than the real one is extended with its last
frame (EmoAva always decodes 254 frames, so its predictions never run short)."""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import log_ndtr

FLOOR = 1e-10
LOG2_FLOOR = np.log2(FLOOR)


def align(pred: np.ndarray, real: np.ndarray) -> np.ndarray:
    """pred cut or extended (last frame repeated) to real's length."""
    T = len(real)
    if len(pred) >= T:
        return pred[:T]
    return np.concatenate([pred, np.repeat(pred[-1:], T - len(pred), 0)])


def _log_diff_exp(la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """log(exp(la) − exp(lb)), −inf where la ≤ lb."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = la + np.log1p(-np.exp(np.minimum(lb - la, 0.0)))
    return np.where(la > lb, out, -np.inf)


def frame_log2p_emoava(y: np.ndarray, yhat: np.ndarray, sigma: float = 0.2, delta: float = 0.8) -> np.ndarray:
    """log₂ of EmoAva's per-frame probability (floored at 1e-10), frames along axis 0 (…, D)."""
    a = log_ndtr((y - yhat + delta) / sigma).sum(-1)
    b = log_ndtr((y - yhat - delta) / sigma).sum(-1)
    return np.maximum(_log_diff_exp(a, b) / np.log(2.0), LOG2_FLOOR)


def frame_log2p_box(y: np.ndarray, yhat: np.ndarray, sigma: float = 0.2, delta: float = 0.8) -> np.ndarray:
    """log₂ of the true probability that N(ŷ, σ²I) falls in the box [y−δ, y+δ] (floored at 1e-10)."""
    a = log_ndtr((y - yhat + delta) / sigma)
    b = log_ndtr((y - yhat - delta) / sigma)
    return np.maximum(_log_diff_exp(a, b).sum(-1) / np.log(2.0), LOG2_FLOOR)


def _ppl(preds, reals, fn, sigma, delta) -> float:
    H = [-fn(np.asarray(r, np.float64), align(np.asarray(p, np.float64), r), sigma, delta).mean()
         for p, r in zip(preds, reals)]
    return float(2.0 ** np.mean(H))


def continuous_ppl(preds: list[np.ndarray], reals: list[np.ndarray], sigma=0.2, delta=0.8) -> float:
    """EmoAva's continuous perplexity (closed form)."""
    return _ppl(preds, reals, frame_log2p_emoava, sigma, delta)


def box_ppl(preds: list[np.ndarray], reals: list[np.ndarray], sigma=0.2, delta=0.8) -> float:
    """The same perplexity with the true ±δ box probability."""
    return _ppl(preds, reals, frame_log2p_box, sigma, delta)


def continuous_ppl_scipy(preds, reals, sigma=0.2, delta=0.8) -> float:
    """EmoAva's definition through scipy's numerical multivariate-normal CDF (the reference's way;
    slow and noisy at about 1e-5): kept for tests and the benchmark."""
    from scipy.stats import multivariate_normal

    H = []
    for p, r in zip(preds, reals):
        r = np.asarray(r, np.float64)
        p = align(np.asarray(p, np.float64), r)
        D = r.shape[1]
        logs = []
        for y, yh in zip(r, p):
            mvn = multivariate_normal(mean=yh, cov=sigma ** 2 * np.eye(D))
            prob = max(mvn.cdf(y + delta) - mvn.cdf(y - delta), FLOOR)
            logs.append(np.log2(prob))
        H.append(-np.mean(logs))
    return float(2.0 ** np.mean(H))


# ------------------------------------------------------------------ distribution metrics

def seq_feature(x: np.ndarray) -> np.ndarray:
    """A sequence's summary for diversity/multimodality: its mean frame."""
    return np.asarray(x, np.float64).mean(0)


def diversity(gens: list[np.ndarray], pairs: int = 300, seed: int = 0) -> float:
    """Mean L2 distance between the mean frames of random pairs of generated sequences (all texts)."""
    if len(gens) < 2:
        return float("nan")
    f = np.stack([seq_feature(g) for g in gens])
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(f), pairs)
    j = (i + rng.integers(1, len(f), pairs)) % len(f)  # never a sequence with itself
    return float(np.linalg.norm(f[i] - f[j], axis=1).mean())


def multimodality(gens_per_text: list[list[np.ndarray]]) -> float:
    """Mean L2 distance between the mean frames of every pair of generations of the same text."""
    vals = []
    for gl in gens_per_text:
        if len(gl) < 2:
            continue
        f = np.stack([seq_feature(g) for g in gl])
        d = np.linalg.norm(f[:, None] - f[None], axis=-1)
        vals.append(d[np.triu_indices(len(f), 1)].mean())
    return float(np.mean(vals)) if vals else float("nan")


def variation(seqs: list[np.ndarray]) -> float:
    """Mean over sequences of the mean over dims of the variance over time (how much a face moves)."""
    return float(np.mean([np.asarray(s, np.float64).var(0).mean() for s in seqs]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of frames (N, D)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular: regularise, as FID implementations do
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def mse(preds: list[np.ndarray], reals: list[np.ndarray]) -> float:
    """Mean squared error per value over the real frames (aligned as for the perplexity)."""
    err = [((align(np.asarray(p, np.float64), r) - np.asarray(r, np.float64)) ** 2).ravel() for p, r in zip(preds, reals)]
    return float(np.concatenate(err).mean())


def length_stats(gen_lengths, real_lengths) -> dict:
    g, r = np.asarray(gen_lengths, float), np.asarray(real_lengths, float)
    out = {"gen_mean": float(g.mean()), "gen_median": float(np.median(g)), "gen_std": float(g.std()),
           "gen_min": int(g.min()), "gen_max": int(g.max()),
           "real_mean": float(r.mean()), "real_median": float(np.median(r)), "real_std": float(r.std())}
    if len(g) == len(r):
        out["mean_abs_error"] = float(np.abs(g - r).mean())
    return out
