"""Evaluation metrics for generated expression sequences.

Continuous perplexity is EmoAva's (evaluate.py), computed in closed form: per frame
p = max(Φ_D(y+δ) − Φ_D(y−δ), 1e-10) with Φ_D the joint CDF of N(ŷ, σ²I); for a diagonal covariance
the joint CDF is a product of 1-D CDFs, so p = Π_d Φ((y_d−ŷ_d+δ)/σ) − Π_d Φ((y_d−ŷ_d−δ)/σ)
(evaluated in log space). Note this is the difference of the CDF at two corners, *not* the
probability of the box [y−δ, y+δ]; that true box probability Π_d [Φ(a_d) − Φ(b_d)] is reported
beside it. H_i = −mean_j log₂ p_ij, PPL = 2^(mean_i H_i).

The `paper` protocol (`paper_ppl`) scores teacher-forced predictions as EmoAva's evaluate.py does;
the free-running variant (`continuous_ppl`) scores a sampled sequence against the real one.
Generated and real sequences differ in length: frame j of the real sequence is compared with frame j
of the generated one, and a generated sequence shorter than the real one is extended with its last
frame (EmoAva always decodes 254 frames, so its predictions never run short)."""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import log_ndtr

FLOOR = 1e-10
LOG2_FLOOR = np.log2(FLOOR)

# (σ, δ) per code space. EmoAva's 0.2 / 0.8 are FLAME units: its expression coefficients have a pooled
# per-dim std of 0.93 (its stage1_std.npy), so δ ≈ 0.86 std and σ ≈ 0.22 std. arkit52 blendshape
# scores live in [0, 1] with far smaller spread (the demo set: mean per-dim std 0.036, largest 0.20),
# where δ = 0.8 would cover nearly every value and saturate p at 1; 0.025 / 0.1 (FLAME's ÷ 8) keeps the
# tolerance near the largest dims' std. Other code spaces (e.g. the synthetic test set) use flame53's.
PPL_SIGMA_DELTA = {"flame53": (0.2, 0.8), "arkit52": (0.025, 0.1)}


def ppl_sigma_delta(code_space: str, sigma: float | None = None, delta: float | None = None) -> tuple[float, float]:
    s, d = PPL_SIGMA_DELTA.get(code_space, PPL_SIGMA_DELTA["flame53"])
    return (s if sigma is None else sigma), (d if delta is None else delta)


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


def paper_ppl(preds: list[np.ndarray], reals: list[np.ndarray], bos: np.ndarray, sigma=0.2, delta=0.8,
              max_frames: int = 253) -> float:
    """EmoAva's `evaluate.py` protocol on teacher-forced predictions: the gold sequence is
    [BOS = mean frame, y_1 .. y_T, EOS = zero frame] in raw units, every position scored (position 0
    and the EOS frame included). preds[i] (T_i + 1, D): the predictions after BOS, y_1 .. y_T, i.e. of
    y_1 .. y_T and of the EOS frame. Our decoder is given the BOS frame, so its position-0 prediction is
    the BOS frame itself (the reference predicts it from [CLS], a position its training loss masks out).
    A sequence longer than `max_frames` is scored on its first max_frames frames, without EOS, as the
    reference's 256-token window cuts it."""
    H = []
    for p, r in zip(preds, reals):
        r = np.asarray(r, np.float64)
        p = np.asarray(p, np.float64)
        T = min(len(r), max_frames)
        gold = np.concatenate([bos[None], r[:T]] + ([np.zeros((1, r.shape[1]))] if len(r) <= max_frames else []))
        pred = np.concatenate([bos[None], p[:len(gold) - 1]])
        H.append(-frame_log2p_emoava(gold, pred, sigma, delta).mean())
    return float(2.0 ** np.mean(H))


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

def _pick(rng, n: int, k: int) -> np.ndarray:
    return rng.choice(n, k, replace=False) if n >= k else rng.integers(0, n, k)


def diversity(seqs: list[np.ndarray], seed: int = 0) -> float:
    """lm-listener's diversity (evaluate_listener.py): per sequence, two random draws of k frames
    (k = 30 when it has more than 30 frames, else 10; without replacement, with it below k frames),
    the mean L2 distance between the paired frames; the mean over sequences."""
    rng = np.random.default_rng(seed)
    vals = []
    for x in seqs:
        x = np.asarray(x, np.float64)
        k = 30 if len(x) > 30 else 10
        vals.append(np.linalg.norm(x[_pick(rng, len(x), k)] - x[_pick(rng, len(x), k)], axis=1).mean())
    return float(np.mean(vals)) if vals else float("nan")


def multimodality(seqs_per_text: list[list[np.ndarray]], pairs: int = 30, seed: int = 0) -> float:
    """The same random-frame-pair distance between *different* sequences of one text: `pairs` draws of
    two sequences (i ≠ j) and a time t < min(T_i, T_j), the L2 distance between frame t of each;
    the mean over draws and texts. Computed alike on generations (n per text) and on real clips that
    share a text, so the two can be compared."""
    rng = np.random.default_rng(seed)
    vals = []
    for sl in seqs_per_text:
        if len(sl) < 2:
            continue
        i = rng.integers(0, len(sl), pairs)
        j = (i + rng.integers(1, len(sl), pairs)) % len(sl)
        d = []
        for a, b in zip(i, j):
            T = min(len(sl[a]), len(sl[b]))
            t = rng.integers(0, T)
            d.append(np.linalg.norm(np.asarray(sl[a][t], np.float64) - np.asarray(sl[b][t], np.float64)))
        vals.append(np.mean(d))
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
