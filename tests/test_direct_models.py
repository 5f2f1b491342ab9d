"""The face models run directly with LiteRT (issue 19) against MediaPipe's own tasks on real
photographs (the face_recognition sdist's Obama and Biden, panned, zoomed and tilted): the detector
gives MediaPipe's boxes and scores, the landmarker MediaPipe's VIDEO-mode tracking, the head pose
MediaPipe's facial transformation matrix."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import load_config

CFG = load_config().faces


@pytest.fixture(scope="module")
def paths():
    from extract.faces.model_files import ensure_models

    p = ensure_models({"face_landmarker": CFG.landmarker_path, "face_detector_full_range": CFG.detector_path})
    return {k: str(v) for k, v in p.items()}


@pytest.fixture(scope="module")
def photo_frames():
    """name → 16 frames 640x360 of one photo: a slow zoom on the face with a sideways drift and a
    12° roll."""
    from testdata.realclips import PhotosUnavailable, photos

    try:
        ph = photos()
    except PhotosUnavailable as e:
        pytest.skip(f"real photographs unavailable: {e}")
    from testdata.realclips import FACE_BOX

    out = {}
    for name in ("obama", "biden", "obama2"):
        img = cv2.cvtColor(cv2.imread(str(ph[name])), cv2.COLOR_BGR2RGB)
        x0, y0, x1, y1 = FACE_BOX[name]
        cx, cy, fh = (x0 + x1) / 2, (y0 + y1) / 2, y1 - y0
        frames = []
        for k in range(16):   # the face 170 -> 200 px tall, drifting right, rolling to 12 degrees
            M = cv2.getRotationMatrix2D((cx, cy), 0.8 * k, (170 + 2 * k) / fh)
            M[:, 2] += (300 + 3 * k - cx, 180 - cy)
            frames.append(cv2.warpAffine(img, M, (640, 360), flags=cv2.INTER_AREA, borderValue=(40, 40, 40)))
        out[name] = frames
    return out


def _mp_detector(path):
    from mediapipe.tasks.python import BaseOptions, vision

    return vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=path), running_mode=vision.RunningMode.IMAGE,
        min_detection_confidence=0.5, min_suppression_threshold=0.3))


def test_detector_gives_mediapipes_boxes_and_scores(paths, photo_frames):
    import mediapipe as mp

    from extract.faces.detect import FaceDetector

    ours = FaceDetector(paths["face_detector_full_range"], 0.5)
    with _mp_detector(paths["face_detector_full_range"]) as ref:
        frames = [f for fs in photo_frames.values() for f in fs[::3]]
        two = np.concatenate([frames[0][:, 160:480], frames[6][:, 160:480]], 1)   # two people side by side
        for f in [*frames, two, frames[0][::2, ::2].copy()]:
            res = ref.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f)))
            want = np.array([(d.bounding_box.origin_x, d.bounding_box.origin_y,
                              d.bounding_box.origin_x + d.bounding_box.width,
                              d.bounding_box.origin_y + d.bounding_box.height, d.categories[0].score)
                             for d in res.detections]).reshape(-1, 5)
            got = ours.detect(f)
            assert len(got) == len(want) >= 1
            # MediaPipe's task reports whole pixels and moves a box that starts left of or above
            # the frame inside it, keeping its size (ours keeps it where the face is)
            o = np.maximum(got[:, :2], 0)
            as_mp = np.concatenate([o, o + (got[:, 2:4] - got[:, :2]), got[:, 4:]], 1)
            for w in want:
                g = as_mp[np.argmin(np.abs(as_mp[:, :4] - w[:4]).sum(1))]
                assert np.abs(g[:4] - w[:4]).max() < 2.0, (g, w)
                assert abs(g[4] - w[4]) < 0.01
        assert len(ours.detect(two)) == 2


def test_landmarker_is_mediapipes_own_tracking(paths, photo_frames):
    """MediaPipe's VIDEO mode takes each frame's face region from the previous frame's landmarks;
    given the same previous landmarks, the direct models give its landmarks, blendshapes and pose."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from extract.faces.meshnet import FaceMeshNet, roi_from_landmarks

    net = FaceMeshNet(paths["face_landmarker"])
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=paths["face_landmarker"]), running_mode=vision.RunningMode.VIDEO,
        num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
    n = 0
    for frames in photo_frames.values():
        with vision.FaceLandmarker.create_from_options(opts) as task:
            prev = None
            for k, f in enumerate(frames):
                # 10^4 s apart: MediaPipe's one-euro smoothing then passes each frame through
                res = task.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f)),
                                            (k + 1) * 10_000_000)
                assert res.face_landmarks
                H, W = f.shape[:2]
                want = np.array([(p.x * W, p.y * H, p.z * W) for p in res.face_landmarks[0]], np.float32)
                want_bs = np.array([c.score for c in res.face_blendshapes[0]], np.float32)
                want_tf = np.asarray(res.facial_transformation_matrixes[0], np.float32).reshape(4, 4)
                # the pose and blendshapes of MediaPipe's own landmarks: its numbers, to float precision
                np.testing.assert_allclose(net.pose.transform(want / (W, H, W), W, H), want_tf, atol=2e-3)
                np.testing.assert_allclose(net.blendshapes(want), want_bs, atol=1e-4)
                if prev is not None:
                    got = net.landmarks(f, roi_from_landmarks(prev))
                    assert got is not None
                    lm = got[0]
                    assert np.linalg.norm(lm[:, :2] - want[:, :2], axis=1).mean() < 0.1
                    assert np.abs(net.blendshapes(lm) - want_bs).max() < 0.03
                    n += 1
                prev = want
    assert n == sum(len(f) - 1 for f in photo_frames.values())


class _Track:
    def __init__(self, box):
        self.last_box, self.active, self.misses = box, True, 0
        self.landmarks, self.transforms, self.boxes, self.measured = [], [], [], []


def test_direct_mode_follows_a_face_like_the_image_mode(paths, photo_frames):
    from extract.faces.detect import FaceDetector
    from extract.faces.landmarks import CropLandmarker
    from extract.faces.quality import euler_deg

    frames = photo_frames["biden"]
    box = FaceDetector(paths["face_detector_full_range"]).detect(frames[0])[0]
    with CropLandmarker(paths["face_landmarker"], mode="direct") as direct, \
            CropLandmarker(paths["face_landmarker"], mode="image") as image:
        assert direct._task is None                   # no MediaPipe graph at all
        t, want_tf = _Track(box), []
        for f in frames:
            r, q = direct.follow(t, f), image.run(f, t.last_box)
            assert r is not None and q is not None
            assert np.linalg.norm(r.landmarks[:, :2] - q.landmarks[:, :2], axis=1).mean() < 3.0
            assert np.abs(r.blendshapes - q.blendshapes).mean() < 0.05
            assert abs(np.log(r.sharpness / q.sharpness)) < 0.3      # measured as in the image mode
            assert r.transform is None                               # the pose waits for the track's end
            t.landmarks.append(r.landmarks)
            t.transforms.append(r.transform)
            t.boxes.append(r.box)
            t.measured.append(r.measured)
            t.last_box = r.box
            want_tf.append(q.transform)
        direct.complete(t)
        # head pose (yaw, pitch, roll) as the image mode measures it, frame by frame
        got = euler_deg(np.stack(t.transforms))
        want = euler_deg(np.stack(want_tf))
        assert np.abs(got - want).max() < 4.0
        assert np.abs(got[:, 2] - want[:, 2]).max() < 1.5      # the 12-degree roll is followed
        assert got[-1, 2] - got[0, 2] > 10
        # a region with no face: the presence score says so
        assert direct.run(np.full((360, 640, 3), 40, np.uint8), np.array([200, 100, 330, 230])) is None


def test_a_face_that_jumps_half_its_size_per_frame_stays_one_track(photo_frames):
    """A whip pan: the face moves by ~70% of its width between frames, out of the region the
    landmarks gave; the tracker finds it again with the detector instead of starting new tracks."""
    from extract.faces.stage import load_models
    from extract.faces.tracks import Tracker

    base = photo_frames["obama"][0]
    small = cv2.resize(base, (320, 180), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(24):
        f = np.full_like(base, 40)
        x = 80 + 70 * (k % 2)          # the ~100 px face jumps 70 px right, then back
        f[90:270, x:x + 320] = small
        frames.append(f)
    cfg = CFG.model_copy(update={"landmark_mode": "direct"})
    det, lm = load_models(cfg)
    tr = Tracker(det, lm, cfg.detect_every, cfg.track_min_px, cfg.link_iou, cfg.merge_iou, cfg.max_gap,
                 cfg.identity_max_jump)
    for i, f in enumerate(frames):
        tr.step(i, f)
    tracks = tr.finish()
    assert [(t.n, t.frames[0]) for t in tracks] == [(24, 0)]
    centres = np.array([(b[0] + b[2]) / 2 for b in tracks[0].boxes])
    assert np.all(np.abs(np.diff(centres)) > 50)         # it followed every jump


def test_landmark_every_k_frames_interpolates_between_measured_ones(paths, photo_frames):
    """faces.landmark_every = 3: one frame in three is landmarked, the two between are interpolated
    (landmarks, blendshapes, box, sharpness; the pose from them), the track stays whole."""
    from extract.faces.detect import FaceDetector
    from extract.faces.landmarks import CropLandmarker
    from extract.faces.tracks import Tracker

    frames = photo_frames["obama2"]          # zooming, drifting, rolling; the mouth open
    det = FaceDetector(paths["face_detector_full_range"])
    out = {}
    for k in (1, 3):
        with CropLandmarker(paths["face_landmarker"], mode="direct", every=k) as lm:
            tr = Tracker(det, lm, CFG.detect_every, CFG.track_min_px, CFG.link_iou, CFG.merge_iou, CFG.max_gap,
                         CFG.identity_max_jump)
            for i, f in enumerate(frames):
                tr.step(i, f)
            (t,) = tr.finish()
            out[k] = t
    every, third = out[1], out[3]
    assert third.frames == every.frames == list(range(len(frames)))
    assert third.measured == [i % 3 == 0 for i in range(len(frames))]
    # between two measured frames: the linear mix of them, not a copy of the earlier one
    np.testing.assert_allclose(third.landmarks[1], (2 * third.landmarks[0] + third.landmarks[3]) / 3, atol=1e-3)
    assert not np.allclose(third.landmarks[1], third.landmarks[0])
    # against every frame: within a pixel on average, blendshapes within 0.03
    lm_err = np.mean([np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean() for a, b in zip(every.landmarks, third.landmarks)])
    bs_err = np.mean([np.abs(a - b).mean() for a, b in zip(every.blendshapes, third.blendshapes)])
    assert lm_err < 1.5 and bs_err < 0.03
    assert all(tf is not None and np.isfinite(tf).all() for tf in third.transforms)
    with pytest.raises(ValueError, match="landmark_every"):
        CropLandmarker(paths["face_landmarker"], mode="image", every=2)
