"""Which face an utterance belongs to: the strict, dominant and speaker policies.

- strict (EmoAva): reject when a second face ≥ track_min_px is on screen in any analysed frame.
  A cut between two single-face shots passes, as in EmoAva; the longest track is kept.
- dominant: keep the longest track if it is present in ≥ dominant_min_cover of the frames and every
  other face is small (< other_max_size_ratio × its size) or brief (< other_max_cover of the frames).
- speaker: if dominant decides, keep that. With no competing face (every other face small or brief)
  keep the main track and let the quality checks judge its presence and coverage. With a competing
  face, only the audio may decide: every competing track whose jawOpen moves (sd ≥
  speaker_min_mouth_sd) gets r = best lagged Pearson r of jawOpen vs the loudness envelope (a still
  mouth counts r = 0); the best one, present in ≥ speaker_min_cover of the frames, wins if r ≥
  speaker_min_r and it beats every other competitor by speaker_margin. No usable audio, no moving
  mouth or no clear winner: rejected. So speaker never keeps what dominant rejects for a competing
  face without that evidence.

Before any policy, a segment without a usable face gets the most specific reason: faces only below
the detector's size limit (too small), detections the landmarker did not confirm or tracks shorter
than min_track_frames and present in under half the frames (brief face; a short utterance whose
face is there throughout is left to the quality check, track_too_short), nothing at all (no face).
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
           loudness: Callable[[], np.ndarray | None] | None = None, stats: dict | None = None) -> Decision:
    """Pick the track (index into `tracks`, each a tracks.dense dict) or reject with a reason.
    `stats`: the tracker's counts (small_detections, small_detection_px_max, unconfirmed_detections)."""
    min_px = cfg.track_min_px
    stats = stats or {}
    fig: dict = {"policy": policy, "n_tracks": len(tracks)}
    if not tracks:
        if stats.get("small_detections"):
            return Decision(None, Reason.FACE_TOO_SMALL,
                            f"only faces below the detector limit track_min_px {min_px} px (analysis size) "
                            f"in {n} frames: largest {stats.get('small_detection_px_max', 0):.0f} px in the "
                            f"source", fig)
        if stats.get("unconfirmed_detections"):
            return Decision(None, Reason.BRIEF_FACE,
                            f"{stats['unconfirmed_detections']} detection(s) in {n} frames that the landmarker "
                            f"did not confirm as a face (false detections)", fig)
        return Decision(None, Reason.NO_FACE, f"no face of at least {min_px} px in any of {n} frames", fig)
    n_valid = np.array([int(d["valid"].sum()) for d in tracks])
    if n_valid.max() < cfg.min_track_frames and n_valid.max() < 0.5 * n:   # brief within the utterance
        return Decision(None, Reason.BRIEF_FACE,
                        f"only brief faces: the longest track has landmarks in {n_valid.max()} of {n} frames, "
                        f"below min_track_frames {cfg.min_track_frames}", fig)
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

    # speaker: no competing face → the main face (quality checks judge presence and coverage)
    fig["decided_by"] = "speaker"
    if not blockers:
        if cover[main] < cfg.speaker_min_cover:
            return Decision(None, Reason.LOW_PRESENCE,
                            f"the only face is present in {_pct(cover[main])} of frames "
                            f"(speaker_min_cover {_pct(cfg.speaker_min_cover)})", fig)
        return Decision(main, Reason.OK, f"one face without competitor, present in {_pct(cover[main])} of frames",
                        fig)
    # a competing face: only mouth–audio evidence may decide
    comp = sorted({main, *blockers, *[k for k in range(len(tracks)) if cover[k] >= cfg.speaker_min_cover]})
    k = blockers[0]
    compete = (f"competing face {med[k] / scale:.0f} px (main {med[main] / scale:.0f} px) "
               f"in {_pct(cover[k])} of frames")
    env = loudness() if loudness is not None else None
    if env is None or len(env) != n or np.ptp(env) < 1e-3:
        return Decision(None, Reason.NO_SPEAKER,
                        f"{compete}, {len(comp)} candidate faces and no usable audio to tell the speaker", fig)
    sd, rs = {}, {}
    for k in comp:
        jaw = tracks[k]["blendshapes"][:, JAW].astype(np.float64)
        sd[k] = float(jaw[valid[k]].std()) if valid[k].sum() > 1 else 0.0
        rs[k] = lagged_r(jaw, env, valid[k], cfg.speaker_max_lag)[0] if sd[k] >= cfg.speaker_min_mouth_sd else 0.0
    fig["speaker_r"] = {str(k): round(v, 3) for k, v in rs.items()}
    fig["speaker_mouth_sd"] = {str(k): round(v, 4) for k, v in sd.items()}
    moving = [k for k in comp if sd[k] >= cfg.speaker_min_mouth_sd and cover[k] >= cfg.speaker_min_cover]
    if not moving:
        return Decision(None, Reason.NO_SPEAKER,
                        f"{compete}; no candidate's mouth moves: jawOpen sd at most {max(sd.values()):.3f}, "
                        f"below speaker_min_mouth_sd {cfg.speaker_min_mouth_sd}", fig)
    best = max(moving, key=lambda k: rs[k])
    r1 = rs[best]
    r2 = max([max(rs[k], 0.0) for k in comp if k != best], default=0.0)
    fig["speaker_margin"] = round(r1 - r2, 3)
    if r1 < cfg.speaker_min_r:
        return Decision(None, Reason.NO_SPEAKER,
                        f"best mouth-audio correlation r={r1:.2f} below speaker_min_r {cfg.speaker_min_r}", fig)
    if r1 - r2 < cfg.speaker_margin:
        return Decision(None, Reason.NO_SPEAKER,
                        f"mouth-audio r={r1:.2f} vs {r2:.2f}: margin {r1 - r2:.2f} below speaker_margin "
                        f"{cfg.speaker_margin}", fig)
    return Decision(best, Reason.OK, f"speaker by mouth-audio r={r1:.2f} (next {r2:.2f})", fig)
