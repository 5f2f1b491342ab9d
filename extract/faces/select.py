"""Which face an utterance belongs to: the strict, dominant and speaker policies.

- strict (EmoAva): reject when a second face ≥ min_face_px is on screen in any analysed frame.
  A cut between two single-face shots passes, as in EmoAva; the longest track is kept.
- dominant: keep the longest track if it is present in ≥ dominant_min_cover of the frames and every
  other face is small (< other_max_size_ratio × its size) or brief (< other_max_cover of the frames).
- speaker: if dominant decides, keep that; otherwise the tracks present in ≥ speaker_min_cover of
  the frames compete: the one whose jawOpen correlates best with the audio loudness envelope wins if
  its r ≥ speaker_min_r and it beats the runner-up by speaker_margin. Otherwise reject.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from extract.faces import BLENDSHAPE_INDEX
from pipeline.records import Reason

JAW = BLENDSHAPE_INDEX["jawOpen"]


@dataclass
class Decision:
    keep: int | None                  # index into the track list, None = rejected
    reason: Reason
    detail: str
    figures: dict = field(default_factory=dict)


def _sizes(d: dict) -> np.ndarray:
    b = d["box"]
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def loudness_envelope(audio: np.ndarray, rate: int, t: np.ndarray, fps: float) -> np.ndarray:
    """Log RMS (dB) of the audio in a window of one frame period centred on each frame time t
    (seconds from the segment start)."""
    half = 0.5 / fps
    out = np.full(len(t), -80.0)
    if len(audio) == 0:
        return out
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    a = np.clip(((t - half) * rate).astype(int), 0, len(audio))
    b = np.clip(((t + half) * rate).astype(int), 0, len(audio))
    m = b > a
    out[m] = 10 * np.log10((csum[b[m]] - csum[a[m]]) / (b[m] - a[m]) + 1e-8)
    return out


def lagged_r(x: np.ndarray, y: np.ndarray, mask: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Best Pearson r of x[i] vs y[i + lag] over |lag| ≤ max_lag, on frames where mask holds."""
    best, best_lag = -1.0, 0
    n = len(x)
    for lag in range(-max_lag, max_lag + 1):
        i = np.arange(max(0, -lag), min(n, n - lag))
        j = i + lag
        m = mask[i]
        if m.sum() < 8:
            continue
        xa, ya = x[i][m], y[j][m]
        if xa.std() < 1e-6 or ya.std() < 1e-6:
            continue
        r = float(np.corrcoef(xa, ya)[0, 1])
        if r > best:
            best, best_lag = r, lag
    return best, best_lag


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def decide(tracks: list[dict], n: int, policy: str, cfg, scale: float,
           loudness: Callable[[], np.ndarray | None] | None = None) -> Decision:
    """Pick the track (index into `tracks`, each a tracks.dense dict) or reject with a reason."""
    min_px = cfg.min_face_px
    fig: dict = {"policy": policy, "n_tracks": len(tracks)}
    if not tracks:
        return Decision(None, Reason.NO_FACE, f"no face of at least {min_px} px in any of {n} frames", fig)
    valid = np.stack([d["valid"] for d in tracks])                       # (k, n)
    sizes = np.stack([_sizes(d) for d in tracks])                         # (k, n) analysis px
    cover = valid.mean(axis=1)
    med = np.array([np.median(s[v]) if v.any() else 0.0 for s, v in zip(sizes, valid)])
    order = np.argsort(-valid.sum(axis=1), kind="stable")
    main = int(order[0])
    fig["track_cover"] = [round(float(c), 3) for c in cover]
    fig["track_px"] = [round(float(m / scale), 1) for m in med]
    big = valid & (sizes >= min_px)
    multi = big.sum(axis=0) >= 2
    fig["multi_face_frames"] = round(float(multi.mean()), 4)

    if policy == "strict":
        if multi.any():
            # the second-largest face on those frames
            second = np.sort(np.where(big[:, multi], sizes[:, multi], 0), axis=0)[-2]
            return Decision(None, Reason.MULTIPLE_FACES,
                            f"second face {np.median(second) / scale:.0f} px in {_pct(multi.mean())} of frames "
                            f"(strict policy)", fig)
        return Decision(main, Reason.OK, "one face per frame", fig)

    # dominant rule (also the first step of speaker)
    others = [k for k in range(len(tracks)) if k != main]
    blockers = []
    for k in others:
        small = med[k] < cfg.other_max_size_ratio * med[main]
        brief = cover[k] < cfg.other_max_cover
        if not (small or brief):
            blockers.append(k)
    dominant_ok = cover[main] >= cfg.dominant_min_cover and not blockers
    if dominant_ok:
        fig["decided_by"] = "dominant"
        return Decision(main, Reason.OK, f"dominant face present in {_pct(cover[main])} of frames", fig)
    if policy == "dominant":
        if blockers:
            k = blockers[0]
            return Decision(None, Reason.NO_DOMINANT,
                            f"another face {med[k] / scale:.0f} px (main {med[main] / scale:.0f} px) "
                            f"in {_pct(cover[k])} of frames", fig)
        return Decision(None, Reason.NO_DOMINANT,
                        f"largest track present in only {_pct(cover[main])} of frames "
                        f"(dominant_min_cover {_pct(cfg.dominant_min_cover)})", fig)

    # speaker: mouth movement vs loudness among the tracks that are on screen long enough
    cands = [k for k in range(len(tracks)) if cover[k] >= cfg.speaker_min_cover]
    fig["decided_by"] = "speaker"
    if not cands:
        return Decision(None, Reason.NO_SPEAKER,
                        f"no face present in {_pct(cfg.speaker_min_cover)} of frames "
                        f"(best {_pct(cover.max())})", fig)
    if len(cands) == 1:
        return Decision(cands[0], Reason.OK, "single candidate face", fig)
    env = loudness() if loudness is not None else None
    if env is None or len(env) != n or np.ptp(env) < 1e-3:
        return Decision(None, Reason.NO_SPEAKER,
                        f"{len(cands)} candidate faces and no usable audio to tell the speaker", fig)
    rs = {}
    for k in cands:
        r, lag = lagged_r(tracks[k]["blendshapes"][:, JAW].astype(np.float64), env, valid[k], cfg.speaker_max_lag)
        rs[k] = (r, lag)
    fig["speaker_r"] = {str(k): round(v[0], 3) for k, v in rs.items()}
    ranked = sorted(cands, key=lambda k: -rs[k][0])
    best = ranked[0]
    r1 = rs[best][0]
    r2 = rs[ranked[1]][0] if len(ranked) > 1 else -1.0
    fig["speaker_margin"] = round(r1 - r2, 3)
    if r1 < cfg.speaker_min_r:
        return Decision(None, Reason.NO_SPEAKER,
                        f"best mouth-audio correlation r={r1:.2f} below speaker_min_r {cfg.speaker_min_r}", fig)
    if r1 - r2 < cfg.speaker_margin:
        return Decision(None, Reason.NO_SPEAKER,
                        f"mouth-audio r={r1:.2f} vs {r2:.2f}: margin {r1 - r2:.2f} below speaker_margin "
                        f"{cfg.speaker_margin}", fig)
    return Decision(best, Reason.OK, f"speaker by mouth-audio r={r1:.2f} (next {r2:.2f})", fig)
