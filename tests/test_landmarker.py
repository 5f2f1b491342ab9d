"""The crop landmarker's fast paths (issue 19) on a real face: the direct C API gives exactly the public
API's results, and VIDEO mode follows a moving face with one task per track, returned to a pool when
the track ends."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import load_config

CFG = load_config().faces


@pytest.fixture(scope="module")
def frames():
    """12 frames 640x360 of the astronaut's face drifting right and growing (a camera move)."""
    from skimage.data import astronaut

    img = astronaut()
    out = []
    for k in range(12):
        s = 0.55 + 0.01 * k
        M = np.float32([[s, 0, 150 + 4 * k], [0, s, 20]])
        out.append(cv2.warpAffine(img, M, (640, 360), borderValue=(90, 90, 90)))
    return out


@pytest.fixture(scope="module")
def paths():
    from extract.faces.model_files import ensure_models

    return ensure_models({"face_landmarker": CFG.landmarker_path, "face_detector_full_range": CFG.detector_path})


def _box(paths, frame):
    from extract.faces.detect import get_detector

    d = get_detector(paths["face_detector_full_range"]).detect(frame)
    assert len(d) == 1
    return d[0]


def test_direct_c_api_matches_public_api_exactly(paths, frames):
    from extract.faces.landmarks import CropLandmarker
    from extract.faces.mptask import direct_available

    assert direct_available(), "mediapipe's ctypes declarations changed: the direct path is off"
    box = _box(paths, frames[0])
    with CropLandmarker(paths["face_landmarker"], mode="image", direct=False) as pub, \
            CropLandmarker(paths["face_landmarker"], mode="image", direct=True) as fast:
        assert fast.direct and not pub.direct
        for f in frames:
            a, b = pub.run(f, box), fast.run(f, box)
            assert a is not None and b is not None
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
            np.testing.assert_array_equal(a.blendshapes, b.blendshapes)
            np.testing.assert_array_equal(a.transform, b.transform)
            assert a.sharpness == b.sharpness
            box = a.box


class _Track:
    def __init__(self, box):
        self.last_box, self.active = box, True


def test_video_mode_follows_each_track_on_its_own_task(paths, frames):
    from extract.faces.landmarks import CropLandmarker

    box = _box(paths, frames[0])
    with CropLandmarker(paths["face_landmarker"], mode="video") as vid, \
            CropLandmarker(paths["face_landmarker"], mode="image") as img:
        t = _Track(box)
        ti = _Track(box)
        for f in frames:
            r, q = vid.follow(t, f), img.follow(ti, f)
            assert r is not None and q is not None
            # the same face, a few px apart at most (the region comes from the last landmarks)
            assert np.linalg.norm(r.landmarks[:, :2] - q.landmarks[:, :2], axis=1).mean() < 4.0
            assert np.isfinite(r.blendshapes).all() and np.isfinite(r.transform).all()
            t.last_box, ti.last_box = r.box, q.box
        first = vid._leases[id(t)][1]
        assert first.t_ms == (len(frames) + 1) * 10_000_000     # warm-up + one step per frame
        # a second live track gets a second task; once the first ends, a new track takes its task
        u = _Track(box)
        assert vid.follow(u, frames[0]) is not None
        assert vid._leases[id(u)][1] is not first
        t.active = False
        w = _Track(box)
        assert vid.follow(w, frames[0]) is not None
        assert vid._leases[id(w)][1] is first and id(t) not in vid._leases


def test_unknown_landmark_mode_is_refused(paths):
    from extract.faces.landmarks import CropLandmarker

    with pytest.raises(ValueError, match="landmark_mode"):
        CropLandmarker(paths["face_landmarker"], mode="fast")
