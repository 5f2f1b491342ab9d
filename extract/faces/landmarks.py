"""Face landmarks, blendshapes and head pose for each tracked face, in frame coordinates.

In the "image" and "video" modes MediaPipe's Face Landmarker task runs on a crop: its own detector is
short-range (it finds a face that fills about half of its 256² input but not a small face in a wide
frame), so each face box (from the full-range detector or the previous frame's landmarks) is cut out
at `crop_scale` × its size, resized to `crop_px`², and the 478 landmarks are mapped back with the
inverse of that similarity transform.

Three ways to follow a tracked face from frame to frame (`faces.landmark_mode`):
- "direct" (default): the task's landmark and blendshape models run directly (extract/faces/meshnet.py,
  LiteRT) on the region MediaPipe's own tracking takes from the previous landmarks (a new face: from
  its detection box, then refined once). No MediaPipe graph, no per-crop detector: the same numbers
  as MediaPipe's VIDEO-mode tracking on the frame (0.02 px, blendshapes within 0.006), at about half
  the CPU of "image". Head pose and sharpness are computed as for the other modes' crop.
- "image": an IMAGE-mode task (num_faces=2) on every crop; its short-range detector runs on each crop.
- "video": each track gets its own VIDEO-mode task (num_faces=1, `follow`), which takes the face's
  region from its previous landmarks and skips that detector (cheaper). Timestamps step by
  `VIDEO_STEP_MS`: so far apart that MediaPipe's landmark smoothing filter (one-euro, on in VIDEO mode
  with one face) passes every frame through unchanged; the results stay per-frame measurements.
The region taken from the previous landmarks differs from the one the short-range detector gives, so
"video" results differ from "image" ones by more than pixel noise; benchmarks/bench_faces.py reports
by how much.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from extract.faces import BLENDSHAPE_NAMES
from extract.faces.mptask import DirectLandmarker, PerThread, TaskOwner, direct_available, mp_image
from extract.faces.runtime import quiet_stderr

MODES = ("direct", "image", "video")
POSE_BATCH = 500     # head poses per batch: ~6 MB of float64 landmarks, whatever the track's length

# 10^4 s between a track's frames: the one-euro filter's weight on the new frame is then 1 - 3e-4, and
# an int64 microsecond clock still holds ~9e8 frames per task.
VIDEO_STEP_MS = 10_000_000


@dataclass
class FaceResult:
    landmarks: np.ndarray    # (478, 3) float32: x, y in frame px, z in the same px scale (relative)
    blendshapes: np.ndarray  # (52,) float32 in BLENDSHAPE_NAMES order
    transform: np.ndarray | None  # (4, 4) float32 facial transformation (rotation valid; translation crop-
    #                               relative); "direct" mode: None until CropLandmarker.complete(track)
    box: np.ndarray          # (4,) float32 landmark bounding box x0, y0, x1, y1 in frame px
    sharpness: float         # variance of the Laplacian over the face part of the gray crop
    measured: bool = True    # False: faces.landmark_every passed this frame over (an estimate until
    #                          complete(track) interpolates it)


def square_from_box(box) -> tuple[float, float, float]:
    """(cx, cy, side) of the square around a box: side = the box's longer side."""
    x0, y0, x1, y1 = [float(v) for v in box[:4]]
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, float, float, float]:
    """Resample the square (cx, cy, side) of `frame` to out×out (zero border outside the frame).
    Returns the crop and (x0, y0, side) to map crop coordinates back: frame = x0 + u * side."""
    side = max(float(side), 1.0)
    k = out / side
    x0, y0 = cx - side / 2, cy - side / 2
    M = np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]], np.float64)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(frame, M, (out, out), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    return crop, x0, y0, side


def _since_measured(track) -> int:
    """How many of the track's latest results are estimates (landmark_every), back to a measured one."""
    n = 0
    for m in reversed(track.measured):
        if m:
            break
        n += 1
    return n


def face_sharpness(frame: np.ndarray, box, crop_scale: float, crop_px: int) -> float:
    """sharpness() of the crop the "image" mode would cut around `box`, without cutting all of it:
    only its centre half (the box's square at the same resolution)."""
    cx, cy, s = square_from_box(box)
    half, _, _, _ = crop_square(frame, cx, cy, s * crop_scale / 2, crop_px // 2)
    return _laplacian_var(half)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian on the centre half of the crop (the face, not the background)."""
    h, w = crop.shape[:2]
    return _laplacian_var(crop[h // 4: 3 * h // 4, w // 4: 3 * w // 4])


def _laplacian_var(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def _faces_public(res) -> list:
    """The public API's result as the direct path's (landmarks, blendshapes, transform) tuples."""
    out = []
    for i, lms in enumerate(res.face_landmarks):
        lm = np.array([(p.x, p.y, p.z) for p in lms], np.float32)
        bs = np.array([c.score for c in res.face_blendshapes[i]], np.float32) \
            if res.face_blendshapes and len(res.face_blendshapes) > i else None
        tf = np.asarray(res.facial_transformation_matrixes[i], np.float32).reshape(4, 4) \
            if res.facial_transformation_matrixes and len(res.facial_transformation_matrixes) > i else None
        out.append((lm, bs, tf))
    return out


class _Task:
    """One landmarker task: the direct C path when available, else the public API."""

    def __init__(self, model_path: str, video: bool, num_faces: int, min_conf: float, direct: bool):
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=num_faces,
            min_face_detection_confidence=min_conf,
            min_face_presence_confidence=min_conf,
            min_tracking_confidence=min_conf,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True)
        self.video = video
        self.t_ms = 0
        with quiet_stderr():
            self._task = vision.FaceLandmarker.create_from_options(opts)
            self._direct = DirectLandmarker(self._task) if direct else None
            self.detect(np.zeros((64, 64, 3), np.uint8))  # the first inference logs; keep it quiet

    def detect(self, crop: np.ndarray) -> list:
        img = mp_image(crop)
        t = None
        if self.video:
            self.t_ms += VIDEO_STEP_MS
            t = self.t_ms
        if self._direct is not None:
            return self._direct.detect(img, t)
        return _faces_public(self._task.detect(img) if t is None else self._task.detect_for_video(img, t))

    def reset(self) -> None:
        """Forget the face being tracked (VIDEO mode): an empty frame finds none, so the next frame
        runs the task's own detector again, as a fresh task would."""
        if self.video:
            self.detect(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = self._direct = None


class CropLandmarker(TaskOwner):
    """Face Landmarker applied to face crops. Use as a context manager.

    `run(frame, box)`: IMAGE mode (num_faces=2, so that when a neighbour's face enters the crop the
    centred one is taken) — new detections and, in "image" mode, every tracked frame.
    `follow(track, frame)`: the next frame of `track` (an object with `last_box` and `active`) — in
    "video" mode on that track's own VIDEO-mode task, which returns to a pool once the track is no
    longer active."""

    def __init__(self, model_path: str, crop_scale: float = 2.0, crop_px: int = 256, min_conf: float = 0.5,
                 mode: str = "direct", direct: bool | None = None, every: int = 1):
        if mode not in MODES:
            raise ValueError(f"faces.landmark_mode must be one of {', '.join(MODES)}, not {mode!r}")
        if every != 1 and mode != "direct":
            raise ValueError(f"faces.landmark_every = {every} needs landmark_mode direct, not {mode!r}")
        self.every = max(1, int(every))
        self.model_path, self.min_conf, self.mode = str(model_path), float(min_conf), mode
        self.direct = direct_available() if direct is None else bool(direct and direct_available())
        self._net = self._task = None
        if mode == "direct":
            from extract.faces.meshnet import FaceMeshNet

            self._net = FaceMeshNet(self.model_path, self.min_conf)
        else:
            self._task = _Task(model_path, False, 2, min_conf, self.direct)
        self.crop_scale = float(crop_scale)
        self.crop_px = int(crop_px)
        self._leases: dict = {}     # id(track) -> (weakref to the track, its VIDEO task)
        self._free: list = []       # VIDEO tasks of ended tracks, reset, for the next track

    def detect_crop(self, crop: np.ndarray):
        """mediapipe's own result object for an already cut crop (public API, IMAGE mode; not in
        "direct" mode, which has no MediaPipe task)."""
        if self._task is None:
            raise RuntimeError("detect_crop needs landmark_mode image or video")
        return self._task._task.detect(mp_image(crop))

    def run(self, frame: np.ndarray, box) -> FaceResult | None:
        """Landmarks of the face in `box` (x0, y0, x1, y1 frame px), or None when there is none."""
        if self._net is not None:
            return self._on_net(frame, None, box)
        return self._on(self._task, frame, box)

    def follow(self, track, frame: np.ndarray) -> FaceResult | None:
        """Landmarks of `track`'s face on this frame, from its last landmarks ("direct") or a crop
        around its last landmark box."""
        if self._net is not None:
            if self.every > 1 and track.landmarks and track.misses == 0 and _since_measured(track) < self.every - 1:
                # landmark_every: pass this frame over, holding the last result until complete()
                return FaceResult(track.landmarks[-1], track.blendshapes[-1], None, track.boxes[-1],
                                  track.sharpness[-1], measured=False)
            return self._on_net(frame, track.landmarks[-1] if track.landmarks else None, track.last_box)
        if self.mode == "image":
            return self._on(self._task, frame, track.last_box)
        return self._on(self._lease(track), frame, track.last_box)

    def _lease(self, track) -> _Task:
        e = self._leases.get(id(track))
        if e is not None and e[0]() is track:
            return e[1]
        for k, (ref, task) in list(self._leases.items()):   # tracks that ended give their task back
            t = ref()
            if t is None or not getattr(t, "active", False):
                del self._leases[k]
                task.reset()
                self._free.append(task)
        task = self._free.pop() if self._free else _Task(self.model_path, True, 1, self.min_conf, self.direct)
        self._leases[id(track)] = (weakref.ref(track), task)
        return task

    def _on_net(self, frame: np.ndarray, prev_lm, box) -> FaceResult | None:
        from extract.faces.meshnet import ROI_SCALE, roi_from_box, roi_from_landmarks

        net = self._net
        if prev_lm is None:
            # a new face: MediaPipe's region around a detection (1.5x its box: the full-range box is
            # about the landmarks' box; at 2x a large face's region spills far off the frame and the
            # model's presence score fails), then the region from those first landmarks. A tracked
            # face that left its region is found again by the tracker's detector (tracks._refind).
            first = net.landmarks(frame, roi_from_box(box, ROI_SCALE))
            if first is None:
                return None
            prev_lm = first[0]
        out = net.landmarks(frame, roi_from_landmarks(prev_lm))
        if out is None:
            return None
        lm = out[0]
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
        box_out = np.array([lo[0], lo[1], hi[0], hi[1]], np.float32)
        # the head pose waits for complete(): one batch per track costs a tenth of frame by frame
        return FaceResult(lm, net.blendshapes(lm), None, box_out,
                          face_sharpness(frame, box_out, self.crop_scale, self.crop_px))

    def complete(self, track) -> None:
        """Fill what the frames left for the end of the track: in "direct" mode the head poses,
        measured as the other modes measure them (in the frame of a crop_scale × box square), after
        the frames landmark_every passed over are interpolated between the measured ones."""
        if not all(track.measured):
            _interpolate_estimates(track)
        todo = [k for k, tf in enumerate(track.transforms) if tf is None]
        for c in range(0, len(todo), POSE_BATCH):
            ks = todo[c:c + POSE_BATCH]
            lm = np.stack([track.landmarks[k] for k in ks]).astype(np.float64)
            box = np.stack([track.boxes[k] for k in ks]).astype(np.float64)
            side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) * self.crop_scale
            lm[..., 0] -= ((box[:, 0] + box[:, 2] - side) / 2)[:, None]
            lm[..., 1] -= ((box[:, 1] + box[:, 3] - side) / 2)[:, None]
            for k, tf in zip(ks, self._net.pose.transform(lm / side[:, None, None], 1.0, 1.0)):
                track.transforms[k] = tf

    def _on(self, task: _Task, frame: np.ndarray, box) -> FaceResult | None:
        cx, cy, s = square_from_box(box)
        crop, x0, y0, side = crop_square(frame, cx, cy, s * self.crop_scale, self.crop_px)
        faces = task.detect(crop)
        if not faces:
            return None
        # the face nearest the crop centre is the one we were asked about
        best, best_d = 0, np.inf
        for i, (f, _, _) in enumerate(faces if len(faces) > 1 else ()):
            mx, my = float(f[:, 0].mean()) - 0.5, float(f[:, 1].mean()) - 0.5
            if mx * mx + my * my < best_d:
                best, best_d = i, mx * mx + my * my
        lm, bs, tf = faces[best]
        lm = lm.copy()
        lm[:, 0] = x0 + lm[:, 0] * side
        lm[:, 1] = y0 + lm[:, 1] * side
        lm[:, 2] = lm[:, 2] * side
        if bs is None:
            bs = np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32)
        if tf is None:
            tf = np.full((4, 4), np.nan, np.float32)
        box_out = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float32)
        return FaceResult(lm, bs, tf, box_out, sharpness(crop))

    def close(self) -> None:
        for task in [self._task, *self._free, *(t for _, t in self._leases.values())]:
            if task is not None:
                task.close()
        self._task, self._free, self._leases, self._net = None, [], {}, None


def _interpolate_estimates(track) -> None:
    """Landmarks, blendshapes, boxes and sharpness of the estimated results, linear in the frame
    index between the measured results around them; after the last measured one, held."""
    meas = np.flatnonzero(track.measured)
    f = np.asarray(track.frames, np.float64)
    for k in np.flatnonzero(~np.asarray(track.measured, bool)):
        j = np.searchsorted(meas, k)
        if j == len(meas):
            continue                                    # the track's end: the held result stays
        p, q = meas[j - 1], meas[j]
        w = (f[k] - f[p]) / (f[q] - f[p])
        for name in ("landmarks", "blendshapes", "boxes"):
            seq = getattr(track, name)
            seq[k] = ((1 - w) * seq[p] + w * seq[q]).astype(np.float32)
        track.sharpness[k] = float((1 - w) * track.sharpness[p] + w * track.sharpness[q])


_landmarkers = PerThread()


def get_landmarker(model_path: str, crop_scale: float = 2.0, crop_px: int = 256, mode: str = "direct",
                   every: int = 1) -> CropLandmarker:
    """One landmarker per thread and setting (module-level lazy singletons; task objects are not
    shared between threads)."""
    return _landmarkers.get((str(model_path), float(crop_scale), int(crop_px), mode, int(every)),
                            lambda: CropLandmarker(model_path, crop_scale, crop_px, mode=mode, every=every))


def close_all() -> None:
    _landmarkers.close_all()
