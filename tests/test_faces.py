"""Face stage on real MediaPipe models and the generated sample clips (ground truth in
<clip>.signals.json): presence per frame, small faces, two-shots, cuts, the three policies, signal
fidelity, the cache contract and failure records."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pipeline.stage import read_stats
from stages import run_faces

from extract.faces import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES
from pipeline.config import load_config
from pipeline.records import Reason, Status

CFG = load_config().faces


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def analysed(sample_dir):
    """analyse() of whole sample clips, once per clip for the module."""
    from extract.faces.stage import analyse

    done = {}

    def get(name):
        if name not in done:
            p = sample_dir / "folder" / f"{name}.mp4"
            sig = json.loads(p.with_suffix(".signals.json").read_text())
            done[name] = (p, sig, analyse(p, 0.0, None, CFG))
        return done[name]
    return get


def test_blendshape_names_match_the_model():
    from skimage.data import astronaut

    from extract.faces.stage import load_models

    _, lm = load_models(CFG)
    res = lm.detect_crop(np.ascontiguousarray(astronaut()[0:300, 80:380]))
    assert tuple(c.category_name for c in res.face_blendshapes[0]) == BLENDSHAPE_NAMES


def test_still_two_shot_found_by_full_range_detector():
    """Two 256-px faces side by side in 1024x512, analysed at 640x320: the landmarker's own
    (short-range) detector misses them, ours finds both and maps landmarks into each box."""
    import cv2
    from skimage.data import astronaut

    from extract.faces.stage import load_models

    det, lm = load_models(CFG)
    face = astronaut()[10:266, 90:346]
    img = np.full((512, 1024, 3), 90, np.uint8)
    img[128:384, 100:356] = face
    img[128:384, 668:924] = face[:, ::-1]
    small = cv2.resize(img, (640, 320), interpolation=cv2.INTER_AREA)
    dets = det.detect(small)
    assert len(dets) == 2
    for d in dets:
        r = lm.run(small, d)
        assert r is not None and r.landmarks.shape == (478, 3)
        assert _iou(r.box, d) > 0.4


@pytest.mark.parametrize("clip", ["talk_01", "talk_03", "two_faces", "cut"])
def test_faces_found_where_they_are(analysed, clip):
    """≥ 95% of frames with faces have them all found (boxes on the true faces), none in no-face
    frames; talk_03 is 1280x720 with a face ~1/10 of the width, two_faces a 640x360 two-shot."""
    p, sig, a = analysed(clip)
    truth = sig["face_boxes"]
    assert a.n == len(truth)
    with_face = [i for i, b in enumerate(truth) if b]
    no_face = [i for i, b in enumerate(truth) if not b]
    hit = 0
    for i in with_face:
        boxes = [np.asarray(tr.boxes[tr.frames.index(i)]) / a.scale for tr in a.tracks if i in tr.frames]
        if len(boxes) == len(truth[i]) and all(max(_iou(b, g) for b in boxes) > 0.4 for g in truth[i]):
            hit += 1
    assert hit >= 0.95 * len(with_face)
    assert all(a.faces_per_frame[i] == 0 for i in no_face)
    if clip == "cut":
        assert len(no_face) >= 20


def test_small_face_is_a_tenth_of_the_width(analysed):
    p, sig, a = analysed("talk_03")
    w = np.median([b[0][2] - b[0][0] for b in sig["face_boxes"]])
    assert sig["size"][0] == 1280 and 0.07 < w / 1280 < 0.13


def test_shot_cut_splits_the_track(analysed):
    p, sig, a = analysed("cut")
    fps = sig["fps"]
    assert [round(c / fps, 1) for c in a.cuts] == sig["shots"]
    assert len(a.tracks) == 2
    for tr in a.tracks:
        span = (tr.frames[0], tr.frames[-1])
        assert not any(span[0] < c <= span[1] for c in a.cuts), "a track crosses a cut"
    assert a.tracks[0].shot != a.tracks[1].shot
    # the whole clip (two shots, neither covering it) is no single face's utterance under any policy
    from extract.faces.stage import evaluate

    fails = {pol: evaluate(a, CFG.model_copy(update={"policy": pol}), _loud(p, a))[3][0]
             for pol in ("strict", "dominant", "speaker")}
    assert fails == {"strict": Reason.LOW_PRESENCE, "dominant": Reason.NO_DOMINANT, "speaker": Reason.NO_SPEAKER}


def _loud(path, a):
    from extract.faces.select import loudness_envelope
    from pipeline.media import read_audio

    return lambda: loudness_envelope(read_audio(path, 0.0, None, 16000), 16000, a.t, a.fps)


def test_two_shot_policies(analysed):
    from extract.faces.stage import evaluate

    p, sig, a = analysed("two_faces")
    speaker_box = np.median([b[0] for b in sig["face_boxes"]], axis=0)
    out = {}
    for pol in ("strict", "dominant", "speaker"):
        out[pol] = evaluate(a, CFG.model_copy(update={"policy": pol}), _loud(p, a))
    dec, d, figs, fail = out["strict"]
    assert fail[0] is Reason.MULTIPLE_FACES and "second face" in fail[1] and "100% of frames" in fail[1]
    dec, d, figs, fail = out["dominant"]
    assert fail[0] is Reason.NO_DOMINANT and "another face" in fail[1]
    dec, d, figs, fail = out["speaker"]
    assert fail is None and dec.reason is Reason.OK and figs["decided_by"] == "speaker"
    kept = np.median(d["box"][d["valid"]], axis=0) / a.scale
    assert _iou(kept, speaker_box) > 0.5, "the speaker policy kept the silent face"
    rs = sorted(figs["speaker_r"].values())
    assert rs[-1] - rs[0] >= CFG.speaker_margin
    # with the audio unavailable the speaker cannot be told: rejected, not guessed
    dec, d, figs, fail = evaluate(a, CFG.model_copy(update={"policy": "speaker"}), lambda: None)
    assert fail[0] is Reason.NO_SPEAKER and "no usable audio" in fail[1]


@pytest.mark.parametrize("clip", ["talk_01", "talk_03", "two_faces"])
def test_blendshapes_follow_driving_signals(analysed, clip):
    from extract.faces.stage import evaluate

    p, sig, a = analysed(clip)
    dec, d, figs, fail = evaluate(a, CFG.model_copy(update={"policy": "speaker"}), _loud(p, a))
    assert fail is None
    v = d["valid"]
    jaw = d["blendshapes"][v, BLENDSHAPE_INDEX["jawOpen"]]
    smile = d["blendshapes"][v][:, [BLENDSHAPE_INDEX["mouthSmileLeft"], BLENDSHAPE_INDEX["mouthSmileRight"]]].mean(1)
    assert np.corrcoef(jaw, np.asarray(sig["mouth_open"])[v])[0, 1] >= 0.8
    assert np.corrcoef(smile, np.asarray(sig["smile"])[v])[0, 1] >= 0.6


def test_quality_checks_name_their_figure(analysed):
    from extract.faces.stage import evaluate

    p, sig, a = analysed("talk_03")
    cases = {"min_face_size_px": (400, Reason.FACE_TOO_SMALL, "median face size"),
             "max_abs_pitch": (0.5, Reason.HEAD_POSE, "median |pitch|"),
             "min_sharpness": (1e4, Reason.BLURRY, "sharpness"),
             "max_jitter": (1e-6, Reason.JITTER, "jitter"),
             "min_track_frames": (10 ** 4, Reason.TOO_SHORT, "landmarks in 110 frames")}
    for field, (value, reason, words) in cases.items():
        _, _, figs, fail = evaluate(a, CFG.model_copy(update={field: value}), None)
        assert fail is not None and fail[0] is reason and words in fail[1], (field, fail)
    _, _, figs, fail = evaluate(a, CFG, None)
    assert fail is None and figs["presence"] == 1.0 and 0 < figs["jitter_median"] < 0.02


def test_euler_angles_from_transform():
    from scipy.spatial.transform import Rotation

    from extract.faces.quality import euler_deg

    R = Rotation.from_euler("ZYX", [10, 25, -15], degrees=True).as_matrix()   # roll, yaw, pitch
    T = np.eye(4)
    T[:3, :3] = R
    np.testing.assert_allclose(euler_deg(T[None])[0], [25, -15, 10], atol=1e-6)


def test_dense_bridges_short_gaps_only():
    from extract.faces.landmarks import FaceResult
    from extract.faces.tracks import Track, dense, smooth_boxes

    tr = Track(tid=0, shot=0)
    for i in [2, 3, 4, 8, 9, 30]:
        lm = np.full((478, 3), float(i), np.float32)
        tr.add(i, FaceResult(lm, np.full(52, i / 100, np.float32), np.eye(4, dtype=np.float32),
                             np.array([i, i, i + 10, i + 10], np.float32), 50.0))
    d = dense(tr, 35, max_gap=5)
    assert d["valid"].sum() == 6 and not d["valid"][5:8].any()
    assert d["bridged"][5:8].all() and not d["bridged"][10:30].any()
    np.testing.assert_allclose(d["landmarks"][6, 0, 0], 6.0)        # interpolated inside the gap
    assert d["landmarks"][0, 0, 0] == 2 and d["landmarks"][34, 0, 0] == 30   # edge hold outside
    sb = smooth_boxes(d["box"], d["valid"], 2.0)
    assert np.isfinite(sb).all() and sb.shape == (35, 4)


def test_deca_crop_box_and_crops():
    from extract.faces.crops import crop_frames, deca_crop_box

    pts = np.array([[100, 50], [200, 50], [100, 170], [200, 170]], float)
    cx, cy, s = deca_crop_box(pts)
    assert (cx, cy) == (150, 110) and s == pytest.approx((100 + 120) / 2 * 1.1 * 1.25)
    frames = np.zeros((2, 240, 320, 3), np.uint8)
    frames[:, 100:120, 140:160] = 255
    c = crop_frames(frames, np.array([[150, 110, 100], [150, 110, 100]]), out=224)
    assert c.shape == (2, 224, 224, 3) and c.dtype == np.uint8
    assert c[0, 112, 112].max() == 255 and c[0, 5, 5].max() == 0


def _ctx(workspace, **faces):
    from pipeline.context import StageContext

    cfg = load_config(overrides=[f"faces.{k}={v}" for k, v in faces.items()])
    return StageContext(cfg=cfg, ws=workspace, run_dir=workspace.runs)


def _seg(path, start, end, sid="seg"):
    from pipeline.hashing import file_hash

    return {"segment_id": sid, "video_path": str(path), "video_hash": file_hash(path), "start": start, "end": end}


def test_process_segment_writes_contract_and_hits_cache(sample_dir, workspace):
    from extract.faces.stage import STAGE
    from pipeline.formats.track import read_track as load_track

    p = sample_dir / "folder" / "talk_01.mp4"
    sig = json.loads(p.with_suffix(".signals.json").read_text())
    s = sig["sentences"][0]
    ctx = _ctx(workspace, save_crops="true")
    rec = run_faces(_seg(p, s["start"], s["end"]), ctx)
    assert rec.status is Status.OK, rec
    arr = load_track(rec.output)
    n = len(arr["t"])
    assert n == pytest.approx((s["end"] - s["start"]) * 25, abs=1.5)
    expect = {"t": ((n,), np.float64), "box": ((n, 4), np.float32), "landmarks": ((n, 478, 3), np.float16),
              "transform": ((n, 4, 4), np.float32), "blendshapes": ((n, 52), np.float32), "valid": ((n,), bool),
              "fps": ((), np.float64)}
    assert set(arr) == set(expect)
    for k, (shape, dtype) in expect.items():
        assert arr[k].shape == shape and arr[k].dtype == dtype, k
    assert 0 <= arr["t"][0] <= 1 / 25 + 1e-6 and np.allclose(np.diff(arr["t"]), 1 / 25) and arr["valid"].all()
    # boxes and landmarks are in original pixels: on the true face
    for k in (0, n // 2, n - 1):
        i = int(round((s["start"] + arr["t"][k]) * 25))
        assert _iou(arr["box"][k], sig["face_boxes"][i][0]) > 0.5
        assert _iou(arr["landmarks"][k, :, :2].min(0).tolist() + arr["landmarks"][k, :, :2].max(0).tolist(),
                    sig["face_boxes"][i][0]) > 0.4
    crops = np.load(rec.output + "/crops.npy")
    assert crops.shape == (n, 224, 224, 3) and crops.dtype == np.uint8 and crops.std() > 10
    q = json.loads((workspace.cache / STAGE).joinpath(*rec.output.split("/")[-2:], "quality.json").read_text())
    assert q["presence"] == 1.0 and q["policy"] == "speaker"
    assert len(q["per_frame"]["yaw"]) == n and None not in q["per_frame"]["face_px"]
    rec2 = run_faces(_seg(p, s["start"], s["end"]), ctx)
    assert read_stats(ctx.run_dir)["faces"]["hits"] == 1 and rec2.to_json() == rec.to_json()


def test_rejection_is_cached_and_failures_are_records(sample_dir, workspace, tmp_path):

    ctx = _ctx(workspace, policy="strict")
    two = sample_dir / "folder" / "two_faces.mp4"
    rec = run_faces(_seg(two, 0.5, 2.0), ctx)
    assert rec.status is Status.SKIPPED and rec.reason is Reason.MULTIPLE_FACES and "px in" in rec.detail
    rec2 = run_faces(_seg(two, 0.5, 2.0), ctx)
    assert read_stats(ctx.run_dir)["faces"]["hits"] == 1 and rec2.reason is Reason.MULTIPLE_FACES
    # a truncated file: a failed record naming the file, not an exception
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes((sample_dir / "folder" / "talk_02.mp4").read_bytes()[:4000])
    r = run_faces(_seg(bad, 0.0, 1.0, "bad"), ctx)
    assert r.status is Status.FAILED and r.reason is Reason.MEDIA_UNREADABLE and "truncated.mp4" in r.detail
    # a span outside the media, and a malformed row
    r = run_faces(_seg(two, 50.0, 52.0, "late"), ctx)
    assert r.status is Status.FAILED and r.reason is Reason.MEDIA_SPAN
    r = run_faces({"segment_id": "x", "video_path": str(two), "start": 0.0, "end": 1.0}, ctx)
    assert r.status is Status.FAILED and r.reason is Reason.ERROR and "video_hash" in r.detail


def test_no_face_segment(sample_dir, workspace):

    p = sample_dir / "folder" / "cut.mp4"
    rec = run_faces(_seg(p, 2.1, 2.9), _ctx(workspace))
    assert rec.status is Status.SKIPPED and rec.reason is Reason.NO_FACE
    assert 18 <= rec.figures["n_frames"] <= 21 and f"any of {rec.figures['n_frames']} frames" in rec.detail
