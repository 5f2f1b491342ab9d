"""Face tracks: an online tracker over the decoded frames, and dense per-frame arrays per track.

Each active track is followed by the landmarker from its previous landmarks (cheap, and more precise
than re-detecting); a face that jumped out of that region (a whip pan) is found again by the detector
nearest its last box. The full-range detector runs every `detect_every` frames, after
a cut, and whenever no track is active; detections that overlap no track (IoU < link_iou) start new
tracks once the landmarker confirms a face there. A track that loses its face for more than `max_gap`
frames ends; shorter gaps are bridged (interpolated, marked invalid). Cuts end every track, so no
track spans two shots. Each landmark result also gets an identity signature (extract/faces/identity.py);
where it jumps by more than `identity_max_jump` the track ends and a new one starts on that frame, so
a track never joins two people even where no cut was seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from extract.faces import BLENDSHAPE_NAMES
from extract.faces.identity import IdentityCheck, signature


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


@dataclass
class Track:
    tid: int
    shot: int
    frames: list = field(default_factory=list)      # frame indices with landmarks
    landmarks: list = field(default_factory=list)   # (478, 3) float32 per frame, analysis px
    blendshapes: list = field(default_factory=list)
    transforms: list = field(default_factory=list)
    boxes: list = field(default_factory=list)       # landmark boxes, analysis px
    sharpness: list = field(default_factory=list)
    jumps: list = field(default_factory=list)       # identity distance to the track's recent past
    measured: list = field(default_factory=list)    # False: a frame faces.landmark_every passed over
    last_box: np.ndarray | None = None
    misses: int = 0
    active: bool = True
    split_from: int | None = None                   # the track whose identity jump started this one
    ident: IdentityCheck = field(default_factory=IdentityCheck)

    def add(self, i: int, r, sig: np.ndarray | None = None, jump: float = 0.0) -> None:
        self.frames.append(i)
        self.jumps.append(float(jump))
        if sig is not None:
            self.ident.add(sig)
        self.landmarks.append(r.landmarks)
        self.blendshapes.append(r.blendshapes)
        self.transforms.append(r.transform)
        self.boxes.append(r.box)
        self.sharpness.append(r.sharpness)
        self.measured.append(r.measured)
        self.last_box = r.box
        self.misses = 0

    @property
    def n(self) -> int:
        return len(self.frames)

    def size(self) -> float:
        """Median face size (longer side of the landmark box, analysis px)."""
        b = np.asarray(self.boxes)
        return float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) if len(b) else 0.0


class Tracker:
    def __init__(self, detector, landmarker, detect_every: int = 5, track_min_px: float = 40,
                 link_iou: float = 0.3, merge_iou: float = 0.5, max_gap: int = 12,
                 identity_max_jump: float = 0.27):
        self.detector = detector
        self.landmarker = landmarker
        self.detect_every = max(1, int(detect_every))
        self.track_min_px = float(track_min_px)
        self.link_iou = float(link_iou)
        self.merge_iou = float(merge_iou)
        self.max_gap = int(max_gap)
        self.identity_max_jump = float(identity_max_jump)   # 0 = no identity check
        self.tracks: list[Track] = []
        self.shot = 0
        self._last_detect = -10 ** 9
        self.n_detect = 0               # frames the detector ran on
        self.n_landmark = 0             # landmarker calls
        self.unconfirmed = 0            # detections the landmarker found no face in
        self.small = 0                  # confirmed faces smaller than track_min_px (not tracked)
        self.small_px_max = 0.0         # the largest of them (analysis px)
        self.identity_splits = 0        # tracks ended by an identity jump
        self.frame_size = (0, 0)        # (w, h) of the analysed frames
        self._dets = None               # (frame index, boxes) of the last detector run

    def active(self) -> list[Track]:
        return [t for t in self.tracks if t.active]

    def cut(self) -> None:
        for t in self.active():
            t.active = False
        self.shot += 1
        self._last_detect = -10 ** 9   # detect on the first frame of the new shot

    def _signature(self, frame, r):
        return signature(frame, r.landmarks) if self.identity_max_jump > 0 else None

    def _detect(self, i: int, frame: np.ndarray) -> np.ndarray:
        """The detector's boxes on frame i, computed once per frame."""
        if self._dets is None or self._dets[0] != i:
            self.n_detect += 1
            self._dets = (i, self.detector.detect(frame))
        return self._dets[1]

    def _refind(self, i: int, t: Track, frame: np.ndarray):
        """A tracked face that left the region its landmarker looked in (it moved by about half its
        size or more since the last frame: a whip pan, a fast turn): the detection nearest its last
        box, within one box size and claimed by no other track, confirmed by the landmarker."""
        c = (t.last_box[:2] + t.last_box[2:4]) / 2
        size = float(max(t.last_box[2] - t.last_box[0], t.last_box[3] - t.last_box[1]))
        best, best_d = None, size
        for d in self._detect(i, frame):
            dist = float(np.hypot(*((d[:2] + d[2:4]) / 2 - c)))
            if dist < best_d and not any(u is not t and u.last_box is not None and iou(d, u.last_box) >= self.link_iou
                                         for u in self.active()):
                best, best_d = d, dist
        if best is None:
            return None
        self.n_landmark += 1
        r = self.landmarker.run(frame, best)
        return r if r is not None and iou(best, r.box) >= self.link_iou else None

    def step(self, i: int, frame: np.ndarray) -> None:
        self.frame_size = (frame.shape[1], frame.shape[0])
        # follow existing tracks from their last box
        for t in self.active():
            self.n_landmark += 1
            r = self.landmarker.follow(t, frame)
            if r is None:
                r = self._refind(i, t, frame)
            if r is not None:
                sig = self._signature(frame, r) if r.measured else None   # an estimate: nothing to check
                jump = t.ident.jump(sig) if sig is not None else 0.0
                if jump > self.identity_max_jump:   # someone else: end this track, start another here
                    t.active = False
                    self.identity_splits += 1
                    nt = Track(tid=len(self.tracks), shot=self.shot, split_from=t.tid)
                    nt.add(i, r, sig)
                    self.tracks.append(nt)
                else:
                    t.add(i, r, sig, jump)
            else:
                t.misses += 1
                if t.misses > self.max_gap:
                    t.active = False
        self._dedupe()
        live = [t for t in self.active() if t.frames and t.frames[-1] == i]
        if i - self._last_detect >= self.detect_every or not live:
            self._last_detect = i
            for d in self._detect(i, frame):
                side = max(d[2] - d[0], d[3] - d[1])
                if side < self.track_min_px:
                    # not tracked; counted (for the reason "too small") only if the landmarker sees a face
                    if not any(t.last_box is not None and iou(d, t.last_box) >= self.link_iou
                               for t in self.active()):
                        self.n_landmark += 1
                        r = self.landmarker.run(frame, d)
                        if r is not None and iou(d, r.box) >= self.link_iou:
                            self.small += 1
                            self.small_px_max = max(self.small_px_max, float(side))
                    continue
                if any(t.last_box is not None and iou(d, t.last_box) >= self.link_iou for t in self.active()):
                    continue
                self.n_landmark += 1
                r = self.landmarker.run(frame, d)
                if r is None or iou(d, r.box) < self.link_iou:
                    self.unconfirmed += 1
                    continue
                if any(iou(r.box, t.last_box) >= self.merge_iou for t in self.active()):
                    continue
                t = Track(tid=len(self.tracks), shot=self.shot)
                t.add(i, r, self._signature(frame, r))
                self.tracks.append(t)

    def _dedupe(self) -> None:
        """Two tracks drifting onto one face: keep the older (longer history)."""
        act = self.active()
        for a in range(len(act)):
            for b in range(a + 1, len(act)):
                ta, tb = act[a], act[b]
                if ta.active and tb.active and iou(ta.last_box, tb.last_box) >= self.merge_iou:
                    (tb if tb.n <= ta.n else ta).active = False

    def finish(self) -> list[Track]:
        for t in self.tracks:
            t.active = False
        done = [t for t in self.tracks if t.n]
        for t in done:
            self.landmarker.complete(t)     # per-track work the landmarker deferred (head poses)
        return done


def _interp_gaps(x: np.ndarray, have: np.ndarray, fill: np.ndarray) -> None:
    """Linear interpolation along axis 0 in place for rows where `fill` is True, from rows in `have`."""
    idx = np.flatnonzero(have)
    if len(idx) == 0:
        return
    tgt = np.flatnonzero(fill)
    if len(tgt) == 0:
        return
    flat = x.reshape(len(x), -1)
    pos = np.searchsorted(idx, tgt)
    lo = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    hi = idx[np.clip(pos, 0, len(idx) - 1)]
    w = np.where(hi > lo, (tgt - lo) / np.maximum(hi - lo, 1), 0.0)[:, None]
    flat[tgt] = flat[lo] * (1 - w) + flat[hi] * w


def dense(track: Track, n: int, max_gap: int) -> dict:
    """Per-frame arrays over the segment's n frames for one track.

    `valid`: landmarks measured on that frame. `bridged`: a gap of ≤ max_gap frames inside the
    track, linearly interpolated. Other frames (before/after the track, longer gaps) hold the nearest
    measured values, so every array is finite; consumers use `valid`."""
    f = np.asarray(track.frames, int)
    valid = np.zeros(n, bool)
    valid[f] = True
    lm = np.zeros((n, 478, 3), np.float32)
    bs = np.zeros((n, len(BLENDSHAPE_NAMES)), np.float32)
    tf = np.zeros((n, 4, 4), np.float32)
    box = np.zeros((n, 4), np.float32)
    sh = np.full(n, np.nan, np.float32)
    jump = np.full(n, np.nan, np.float32)
    jump[f] = track.jumps
    lm[f] = np.stack(track.landmarks)
    bs[f] = np.stack(track.blendshapes)
    tf[f] = np.stack(track.transforms)
    box[f] = np.stack(track.boxes)
    sh[f] = track.sharpness
    bridged = np.zeros(n, bool)
    for a, b in zip(f[:-1], f[1:]):
        if 1 < b - a <= max_gap + 1:
            bridged[a + 1:b] = True
    rest = ~valid
    for arr in (lm, bs, tf, box):
        _interp_gaps(arr, valid, rest)   # inside: interpolation; outside: nearest (edge hold)
    return {"valid": valid, "bridged": bridged, "landmarks": lm, "blendshapes": bs, "transform": tf,
            "box": box, "sharpness": sh, "identity_jump": jump, "first": int(f[0]), "last": int(f[-1])}


def smooth_boxes(box: np.ndarray, have: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed boxes (n, 4) after filling frames without a measurement by interpolation."""
    b = np.asarray(box, np.float64).copy()
    _interp_gaps(b, have, ~have)
    if sigma > 0 and len(b) > 1:
        b = gaussian_filter1d(b, sigma, axis=0, mode="nearest")
    return b.astype(np.float32)
