"""The face stage: per utterance segment, find, track and choose the face, and store its landmarks,
blendshapes and head transforms in the stage cache (docs/faces.md, ARCHITECTURE.md "Faces output").

One decode pass at the analysis rate and size feeds the cut detector, the full-range detector and
the crop landmarker. Models are loaded once per process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.formats.track import write_crops, write_quality, write_track
from pipeline.records import Reason, Record, Status
from pipeline.stage import Stage

STAGE = "faces"
CODE_VERSION = "4"   # 2: pre-roll cut detection, identity splits, coverage; quality.json has an `overview`; 3: LiteRT detector + landmarker, YUV downscale; 4: frames and audio on the media timeline, coverage against the utterance span, audio stream recorded

_MODEL_PATHS: dict = {}


def load_models(cfg):
    """(detector, landmarker) singletons for this process, installing the model files if needed."""
    from extract.faces.detect import get_detector
    from extract.faces.landmarks import get_landmarker
    from extract.faces.model_files import ensure_models
    from extract.faces.runtime import one_cv_thread

    one_cv_thread()
    key = (cfg.landmarker_path, cfg.detector_path)
    if key not in _MODEL_PATHS:   # verify (hash) the files once per process, not per segment
        try:
            _MODEL_PATHS[key] = ensure_models({"face_landmarker": cfg.landmarker_path,
                                               "face_detector_full_range": cfg.detector_path})
        except Exception as e:    # remembered: every later segment fails fast with the same message
            _MODEL_PATHS[key] = e
    paths = _MODEL_PATHS[key]
    if isinstance(paths, Exception):
        raise paths
    return (get_detector(paths["face_detector_full_range"], cfg.detect_min_conf),
            get_landmarker(paths["face_landmarker"], cfg.crop_scale, cfg.crop_px, cfg.landmark_mode,
                           cfg.landmark_every))


@dataclass
class Analysis:
    n: int                       # analysed frames
    fps: float
    t: np.ndarray                # (n,) seconds from the segment start
    scale: float                 # analysis px / original px
    size: tuple                  # (w, h) of the analysed frames
    cuts: list                   # frame indices starting a new shot
    tracks: list                 # extract.faces.tracks.Track
    faces_per_frame: np.ndarray  # (n,) tracked faces with landmarks on each frame
    stats: dict = field(default_factory=dict)
    span_frames: int | None = None  # frame periods in the utterance [start, end) (None: n)
    lead: int = 0                # the utterance-grid index of the first analysed frame (> 0: the media starts late)


def _segment_frames(path, start: float, end: float | None, cfg, max_side: int, info=None):
    """(frame, t, scale, is_preroll) for the segment's analysis frames, preceded by the pre-roll.

    With a pre-roll the decode starts `shot_preroll_frames` + 1 frame periods early (ffmpeg's fps
    filter may drop the first one after a seek); frames before start - half a period are the
    pre-roll. Every decode of a segment (analysis, crops) goes through here, so all of them see the
    same frame grid."""
    from pipeline.media import decode

    period = 1.0 / cfg.analysis_fps
    k = cfg.shot_preroll_frames
    d_start = max(0.0, start - (k + 1) * period) if k > 0 else start
    for batch in decode(path, d_start, end, fps=cfg.analysis_fps, max_side=max_side, info=info):
        for frame, tt in zip(batch.frames, batch.t):
            yield frame, float(tt), batch.scale, bool(k > 0 and tt < start - 0.5 * period)


def analyse(path, start: float, end: float | None, cfg, info=None) -> Analysis:
    """Decode [start, end) once and track every face in it. The decode starts a few frames early
    (_segment_frames): the pre-roll only shows the cut detector what came before the segment, so a
    cut on the segment's first frame splits like any other."""
    from extract.faces.shots import ShotDetector
    from extract.faces.tracks import Tracker

    import math

    from pipeline.media import probe

    if end is None:
        info = info or probe(path)
        end = info.video_start + info.duration
    detector, landmarker = load_models(cfg)
    shots = ShotDetector(cfg.shot_threshold, max(1, int(round(cfg.shot_min_len_s * cfg.analysis_fps))))
    tracker = Tracker(detector, landmarker, cfg.detect_every, cfg.track_min_px, cfg.link_iou, cfg.merge_iou,
                      cfg.max_gap, cfg.identity_max_jump)
    ts, scale, i, pre = [], 1.0, 0, 0
    size = (0, 0)
    for frame, tt, scale, is_pre in _segment_frames(path, start, end, cfg, cfg.max_side, info):
        if is_pre:          # pre-roll: seen by the cut detector only
            shots.prime(frame)
            pre += 1
            continue
        size = (frame.shape[1], frame.shape[0])
        _, cut = shots.update(frame)
        if cut:
            tracker.cut()
        tracker.step(i, frame)
        ts.append(tt - start)
        i += 1
    tracks = tracker.finish()
    # where the analysed frames lie on the utterance's grid start + k/fps: the first and last decoded
    # frame are checked against the span, so coverage counts what the media did not deliver
    span_frames = max(1, math.ceil((end - start) * cfg.analysis_fps - 1e-6))
    lead = int(round(ts[0] * cfg.analysis_fps)) if ts else 0
    per_frame = np.zeros(i, int)
    for tr in tracks:
        per_frame[np.asarray(tr.frames, int)] += 1
    return Analysis(n=i, fps=cfg.analysis_fps, t=np.asarray(ts, np.float64), scale=scale, size=size,
                    cuts=shots.cuts, tracks=tracks, faces_per_frame=per_frame,
                    stats={"n_detect": tracker.n_detect, "n_landmark": tracker.n_landmark,
                           "unconfirmed_detections": tracker.unconfirmed,
                           "small_detections": tracker.small,
                           "small_detection_px_max": round(tracker.small_px_max / scale, 1),
                           "identity_splits": tracker.identity_splits, "preroll_frames": pre,
                           # frames of kept tracks that faces.landmark_every interpolated, not measured
                           "estimated_frames": sum(len(t.measured) - sum(t.measured) for t in tracks),
                           "span_frames": span_frames, "lead_frames": lead},
                    span_frames=span_frames, lead=lead)


def _output_arrays(d: dict, a: Analysis, cfg) -> dict:
    """The track arrays (pipeline/formats/track.py) of the kept dense track, in original pixels."""
    from extract.faces.tracks import smooth_boxes

    s = a.scale
    lm = d["landmarks"].copy()
    lm /= s                                           # x, y and the px-scaled z
    box = smooth_boxes(d["box"] / s, d["valid"], cfg.box_smooth_sigma)
    return {"t": a.t.astype(np.float64), "box": box.astype(np.float32), "landmarks": lm.astype(np.float16),
            "transform": d["transform"].astype(np.float32), "blendshapes": d["blendshapes"].astype(np.float32),
            "valid": d["valid"].astype(bool), "fps": np.float64(a.fps)}


def crops_for(path, start, end, arrays: dict, cfg, info=None) -> np.ndarray:
    """DECA crops of the kept track: a second decode at crop_max_side (sharper than analysis frames)."""
    from extract.faces.crops import DECA_SCALE, DECA_SIZE, crop_frames, track_crop_boxes

    boxes = track_crop_boxes(arrays["landmarks"], arrays["valid"], DECA_SCALE, cfg.box_smooth_sigma)
    n = len(boxes)
    out = np.zeros((n, DECA_SIZE, DECA_SIZE, 3), np.uint8)
    i = 0
    for frame, _, sc, is_pre in _segment_frames(path, start, end, cfg, cfg.crop_max_side, info):
        if is_pre:
            continue
        if i >= n:
            break
        out[i] = crop_frames(frame[None], boxes[i:i + 1] * sc)[0]
        i += 1
    return out


def evaluate(a: Analysis, cfg, loudness=None):
    """Policy + quality on an analysis: (Decision, kept dense track or None, quality figures, failure)."""
    from extract.faces import quality
    from extract.faces.select import decide
    from extract.faces.tracks import dense

    ds = [dense(tr, a.n, cfg.max_gap) for tr in a.tracks]
    dec = decide(ds, a.n, cfg.policy, cfg, a.scale, loudness, a.stats)
    figs = {"decision": dec.reason.value, "decision_detail": dec.detail, **dec.figures,
            "n_frames": a.n, "cuts": list(a.cuts), **a.stats}
    if len(ds) > 1:
        figs["overview"] = overview(ds, a, dec.keep)
    if dec.keep is None:
        return dec, None, figs, (dec.reason, dec.detail)
    d = ds[dec.keep]
    q = quality.figures(d, a.n, a.scale, a.size, a.fps, cfg.max_outside, a.lead, a.span_frames)
    figs.update(q)
    figs["per_frame"] = quality.per_frame(d, a.scale, a.size)
    return dec, d, figs, quality.check(q, cfg)


def overview(ds: list[dict], a: Analysis, keep: int | None) -> dict:
    """One frame with the most faces on screen (the middle one of those) and every track's box there, in
    original pixels: the report draws it to show which face was kept and which were not."""
    valid = np.stack([d["valid"] for d in ds])
    count = valid.sum(axis=0)
    best = np.flatnonzero(count == count.max())
    i = int(best[len(best) // 2])
    boxes = [[round(float(x) / a.scale, 1) for x in d["box"][i]] if d["valid"][i] else None for d in ds]
    return {"frame": i, "t": round(float(a.t[i]), 3) if len(a.t) > i else 0.0,
            "kept": -1 if keep is None else int(keep), "boxes": boxes}


def _speech_spans(seg: dict) -> list:
    """The VAD speech regions the speech stage found in the segment ([] when it did not hear it)."""
    import json

    try:
        return [tuple(x) for x in json.loads(seg.get("speech_spans") or "[]")]
    except (TypeError, ValueError):
        return []


def _loudness_fn(path, start, end, a: Analysis, rate: int, info, spans=()):
    def fn():
        from extract.faces.select import loudness_envelope
        from pipeline.media import read_audio_stream

        audio, k = read_audio_stream(path, start, end, rate=rate, info=info)
        # the audio stream the speaker check heard (position among the audio streams, ffmpeg's 0:a:N);
        # a.stats enters the quality figures and the record after the decision
        if k >= 0:
            a.stats["audio_stream"] = k
            a.stats["audio_lang"] = info.audio_streams[k]["language"] if info and info.audio_streams else ""
        if not len(audio):
            return None
        env = loudness_envelope(audio, rate, a.t, a.fps)
        if spans:   # music, laughter, noise between words is not the speaker's voice: silence it
            tt = start + a.t
            inside = np.zeros(len(tt), bool)
            for s0, s1 in spans:
                inside |= (tt >= s0 - 0.5 / a.fps) & (tt <= s1 + 0.5 / a.fps)
            env = np.where(inside, env, -80.0)
        return env
    return fn


class FacesStage(Stage):
    """One utterance segment -> its kept face track, or the most specific reason there is none."""

    name, code_version, section = STAGE, CODE_VERSION, "faces"

    def label(self, seg: dict) -> str:
        return f"{seg.get('source_id', '')}/{seg.get('video_id', '')} {float(seg['start']):.2f}-{float(seg['end']):.2f}s"

    def key_inputs(self, seg: dict, ctx) -> tuple:
        key = seg["video_hash"], f"{float(seg['start']):.3f}", f"{float(seg['end']):.3f}"
        spans = _speech_spans(seg)   # they shape the speaker check's loudness
        return key + ((spans,) if spans else ())

    def process(self, seg: dict, ctx, out: Path) -> Record:
        from pipeline.media import probe

        cfg, seg_id = ctx.cfg.faces, self.item_id(seg)
        start, end = float(seg["start"]), float(seg["end"])
        path = Path(seg["video_path"])
        info = probe(path, timeout=ctx.cfg.media.probe_timeout_s)
        a = analyse(path, start, end, cfg, info=info)
        dec, d, figs, fail = evaluate(a, cfg, _loudness_fn(path, start, end, a, ctx.cfg.media.audio_rate, info,
                                                                  _speech_spans(seg)))
        small = {k: v for k, v in figs.items() if not isinstance(v, (list, dict))}
        if fail is None:
            arrays = _output_arrays(d, a, cfg)
            write_track(out, arrays)
            if cfg.save_crops:
                write_crops(out, crops_for(path, start, end, arrays, cfg, info))
        write_quality(out, figs)
        if fail is not None:
            return Record(STAGE, seg_id, Status.SKIPPED, fail[0], fail[1], small, "")
        return Record(STAGE, seg_id, Status.OK, Reason.OK, dec.detail, small, "")


FACES = FacesStage()


__all__ = ["STAGE", "CODE_VERSION", "FACES", "FacesStage", "analyse", "evaluate", "load_models", "Analysis",
           "crops_for"]
