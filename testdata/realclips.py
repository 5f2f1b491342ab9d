"""Regression clips from real photographs: the `face_recognition` 1.3.0 sdist's test images (Obama,
Biden) animated with pans and zooms, cut, cross-faded, shrunk, pushed off the frame edge.

The photos are not in this repository: `photos()` fetches the sdist with `pip download` (PyPI only,
as in CI) into a cache folder once and reads `tests/test_images/` from it. Frames are rendered with
an affine placement per frame (the face box is known in each photo, so the truth is exact) and
encoded by `samplegen.encode` (deterministic H.264). Each clip has `<name>.truth.json`:

    {"fps": 25, "size": [w, h], "n_frames": n, "cuts": [frame, ...],
     "faces": per frame [{"id": "obama", "box": [x0, y0, x1, y1]}, ...], "segments": {...}}

`box` is the landmark box (forehead-to-chin, ear-to-ear as the landmarker sees it) in clip pixels.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.atomic import atomic_dir, write_json

VERSION = "1"
SDIST = "face-recognition==1.3.0"
FPS = 25
SIZE = (640, 360)

# Landmark boxes (x0, y0, x1, y1, photo px) of the one face in each photo, measured with the stage's
# own detector + crop landmarker on the photo at 640 px.
FACE_BOX = {
    "biden": (422, 232, 708, 559),
    "obama": (373, 128, 609, 420),
    "obama2": (195, 280, 480, 634),   # talking, mouth open; a second face is cut off at the right edge
    "obama3": (634, 303, 907, 607),
}
# The part of a photo a clip shows (photo px): obama2 without the second, half-hidden face on the right.
SRC = {"obama2": (0, 0, 540, 1200)}
# A region without any face: obama3's legs, floor and curtains.
NO_FACE_REGION = ("obama3", (0, 1700, 1434, 2333))


class PhotosUnavailable(RuntimeError):
    """pip could not fetch the sdist (no registry access)."""


def cache_dir() -> Path:
    return Path(os.environ.get("WORDSMILE_PHOTOS", Path.home() / ".cache" / "wordsmile" / "face_recognition_photos"))


def photos(dest: Path | None = None) -> dict[str, Path]:
    """name → path of the sdist's test photos, fetched with `pip download` into `dest` once."""
    dest = Path(dest or cache_dir())
    imgs = dest / "test_images"
    if not (imgs / "obama.jpg").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        dl = dest / "dl"
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "--disable-pip-version-check", "-q", SDIST, "-d", str(dl)],
                           capture_output=True, text=True, timeout=300)
        tars = sorted(dl.glob("face_recognition-*.tar.gz")) if dl.is_dir() else []
        if r.returncode != 0 or not tars:
            raise PhotosUnavailable(f"pip download {SDIST} failed (rc {r.returncode}): {r.stderr.strip()[-400:]}")
        with atomic_dir(imgs, replace=True) as tmp, tarfile.open(tars[0]) as tf:
            for m in tf.getmembers():
                if m.isfile() and "/tests/test_images/" in m.name and m.name.endswith((".jpg", ".png")):
                    (tmp / Path(m.name).name).write_bytes(tf.extractfile(m).read())
    return {p.stem: p for p in sorted(imgs.iterdir()) if p.suffix in (".jpg", ".png")}


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------

class Photo:
    """An RGB photo with a pyramid, so strong downscaling is area-averaged rather than aliased."""

    def __init__(self, path: Path):
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        self.levels = [np.ascontiguousarray(bgr[:, :, ::-1])]
        while min(self.levels[-1].shape[:2]) > 64:
            im = self.levels[-1]
            self.levels.append(cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2), interpolation=cv2.INTER_AREA))

    def warp(self, M: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The photo under the affine M (photo px → clip px), rendered at `size` (w, h)."""
        import cv2

        s = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
        k = 0
        while k + 1 < len(self.levels) and s * 2 ** (k + 1) <= 1.0:
            k += 1
        f = 2.0 ** k
        # level k pixel i covers photo pixels around f*i + (f-1)/2
        L = np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1]])
        Mk = np.vstack([M, [0, 0, 1]]) @ L
        return cv2.warpAffine(self.levels[k], Mk[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def place(name: str, cx: float, cy: float, face_h: float) -> np.ndarray:
    """Affine (2x3) putting photo `name`'s face box centre at (cx, cy) with the box `face_h` px high."""
    x0, y0, x1, y1 = FACE_BOX[name]
    s = face_h / (y1 - y0)
    return np.array([[s, 0, cx - s * (x0 + x1) / 2], [0, s, cy - s * (y0 + y1) / 2]], np.float64)


def face_box(name: str, M: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = FACE_BOX[name]
    p = M @ np.array([[x0, x1], [y0, y1], [1, 1]], np.float64)
    return [round(float(v), 1) for v in (p[0].min(), p[1].min(), p[0].max(), p[1].max())]


@dataclass
class Layer:
    photo: str
    M: np.ndarray
    src: tuple[int, int, int, int] | None = None      # the part of the photo shown (photo px); None = all
    region: tuple[int, int, int, int] | None = None   # and only inside this clip rectangle; None = all
    face: bool = True


def _rect_mask(M: np.ndarray, src, shape) -> np.ndarray:
    """Boolean mask of the clip pixels that the photo rectangle `src` lands on under M."""
    import cv2

    x0, y0, x1, y1 = src
    pts = (M @ np.array([[x0, x1, x1, x0], [y0, y0, y1, y1], [1, 1, 1, 1]], np.float64)).T
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(m, np.round(pts).astype(np.int32), 1)
    return m.astype(bool)


def render(layers: list[Layer], imgs: dict[str, Photo], size=SIZE) -> tuple[np.ndarray, list[dict]]:
    """Draw the layers in order (each only where its photo, `src` and `region` reach); the face boxes."""
    w, h = size
    out = np.zeros((h, w, 3), np.uint8)
    faces = []
    for L in layers:
        ph = imgs[L.photo]
        im = ph.warp(L.M, size)
        src = L.src or (0, 0, ph.levels[0].shape[1], ph.levels[0].shape[0])
        m = _rect_mask(L.M, src, out.shape)
        if L.region is not None:
            x0, y0, x1, y1 = L.region
            r = np.zeros_like(m)
            r[y0:y1, x0:x1] = True
            m &= r
        out[m] = im[m]
        if L.face:
            b = face_box(L.photo, L.M)
            if L.region is not None:   # the part of the face the region shows
                b = [max(b[0], L.region[0]), max(b[1], L.region[1]), min(b[2], L.region[2]), min(b[3], L.region[3])]
            if b[2] - b[0] > 4 and b[3] - b[1] > 4:
                faces.append({"id": L.photo.rstrip("0123456789"), "box": b, "photo": L.photo})
    return out, faces


def _ease(i: int, n: int) -> float:
    x = i / max(n - 1, 1)
    return x * x * (3 - 2 * x)


def _talk(name: str, n: int, c0, c1, h0: float, h1: float) -> list[list[Layer]]:
    """One face panning from c0 to c1 and zooming from face height h0 to h1 over n frames, over the
    face-free background where the photo does not reach."""
    out = []
    bg = _background(n)
    for i in range(n):
        e = _ease(i, n)
        cx, cy = c0[0] + e * (c1[0] - c0[0]), c0[1] + e * (c1[1] - c0[1])
        out.append(bg[i] + [Layer(name, place(name, cx, cy, h0 + e * (h1 - h0)), SRC.get(name))])
    return out


def _background(n: int, size=SIZE) -> list[list[Layer]]:
    """A slow pan over a face-free part of a photo (legs, floor, curtains)."""
    name, (x0, y0, x1, y1) = NO_FACE_REGION
    s = size[1] / (y1 - y0) * 1.15
    out = []
    for i in range(n):
        dx = -x0 * s - 40 * _ease(i, n)
        out.append([Layer(name, np.array([[s, 0, dx], [0, s, -y0 * s - 10]], np.float64), face=False)])
    return out


# --------------------------------------------------------------------------------------------
# the clips
# --------------------------------------------------------------------------------------------

W, H = SIZE


def _cut_clip() -> tuple[list, dict]:
    """Obama (zooming in) until 1.0 s, then a hard cut to Biden (panning) until 3.0 s."""
    a = _talk("obama", 25, (300, 170), (320, 180), 170, 200)
    b = _talk("biden", 50, (340, 175), (300, 185), 190, 180)
    segs = {f"cut_at_{k}": [round((25 - k) / FPS, 3), round((25 - k) / FPS + 1.6, 3)] for k in (0, 1, 5, 10, 20)}
    return a + b, {"cuts": [25], "segments": segs}


def _crossfade_clip() -> tuple[list, dict]:
    """Obama dissolving into Biden over 8 frames (no frame-to-frame change large enough for a cut):
    only the identity check can split the track."""
    a = _talk("obama", 40, (320, 175), (322, 178), 190, 195)
    b = _talk("biden", 40, (322, 178), (318, 176), 195, 190)
    frames, fade = [], 8
    for i in range(72):
        if i < 32:
            frames.append(a[i])
        elif i < 32 + fade:
            frames.append(("mix", a[i], b[i - 32], (i - 31) / (fade + 1)))
        else:
            frames.append(b[i - 32])
    return frames, {"cuts": [], "fade": [32, 32 + fade], "segments": {"whole": [0.0, 72 / FPS]}}


def _two_faces_clip() -> tuple[list, dict]:
    """Obama (left half) and Biden (right half), the same size, drifting slowly."""
    frames = []
    bg = _background(60)
    for i in range(60):
        e = _ease(i, 60)
        frames.append(bg[i] + [Layer("obama", place("obama", 160 + 8 * e, 180, 150), region=(0, 0, W // 2, H)),
                               Layer("biden", place("biden", 480 - 8 * e, 182, 150), region=(W // 2, 0, W, H))])
    return frames, {"cuts": [], "segments": {"whole": [0.0, 60 / FPS]}}


def _edge_clip() -> tuple[list, dict]:
    """Obama's face with about a fifth of its box beyond the left frame edge."""
    return _talk("obama", 50, (46, 180), (52, 176), 200, 205), {"cuts": [], "segments": {"whole": [0.0, 2.0]}}


def _small_clip() -> tuple[list, dict]:
    """Obama's face 26 px high in 640x360 (about 52 px in a 1280x720 source)."""
    return _talk("obama3", 50, (300, 170), (310, 172), 26, 26), {"cuts": [], "segments": {"whole": [0.0, 2.0]}}


def _no_face_clip() -> tuple[list, dict]:
    return _background(50), {"cuts": [], "segments": {"whole": [0.0, 2.0]}}


def _brief_clip() -> tuple[list, dict]:
    """The face-free background with Biden's face shown for 3 frames (a flash, an insert)."""
    frames = _background(50)
    for i in (20, 21, 22):
        frames[i] = frames[i] + [Layer("biden", place("biden", 320, 170, 160), region=(220, 40, 420, 300))]
    return frames, {"cuts": [], "segments": {"whole": [0.0, 2.0]}}


def _talk_clip() -> tuple[list, dict]:
    """One face, panning and zooming: the control that must be kept."""
    return (_talk("obama2", 60, (300, 190), (340, 175), 160, 210),
            {"cuts": [], "segments": {"whole": [0.0, 60 / FPS]}})


def _two_faces_voice_clip() -> tuple[list, dict]:
    """The two-shot with a voice on the audio track: neither still face moves its mouth, so the audio
    cannot pick a speaker (mouth-movement floor)."""
    frames, meta = _two_faces_clip()
    return frames, {**meta, "voice": True}


CLIPS: dict[str, Callable[[], tuple[list, dict]]] = {
    "cut": _cut_clip, "crossfade": _crossfade_clip, "two_faces": _two_faces_clip,
    "two_faces_voice": _two_faces_voice_clip, "edge": _edge_clip,
    "small": _small_clip, "no_face": _no_face_clip, "brief": _brief_clip, "talk": _talk_clip,
}


def _frames(spec: list, imgs: dict[str, Photo], faces_out: list):
    for f in spec:
        if isinstance(f, tuple) and f[0] == "mix":
            _, a, b, w = f
            ia, fa = render(a, imgs)
            ib, fb = render(b, imgs)
            img = np.round((1 - w) * ia.astype(np.float32) + w * ib.astype(np.float32)).astype(np.uint8)
            faces_out.append(fa if w < 0.5 else fb)
        else:
            img, fs = render(f, imgs)
            faces_out.append(fs)
        yield img


def make_clips(dest: Path, names: list[str] | None = None, photo_dir: Path | None = None) -> dict[str, Path]:
    """Render and encode the clips (all, or `names`) into `dest`; reuses clips already there."""
    from testdata.samplegen import encode, make_voice

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = list(names or CLIPS)
    out = {}
    imgs: dict[str, Photo] | None = None
    for name in names:
        mp4 = dest / f"{name}.mp4"
        truth_p = dest / f"{name}.truth.json"
        if not (mp4.is_file() and truth_p.is_file()):
            if imgs is None:
                imgs = {k: Photo(p) for k, p in photos(photo_dir).items() if k in FACE_BOX}
            spec, meta = CLIPS[name]()
            faces: list = []
            audio = None
            if meta.get("voice"):   # syllable-rate loudness, 4 Hz
                t = np.arange(len(spec) + 1) / FPS
                audio = make_voice(len(spec) / FPS, t, 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t), seed=7)
            encode(mp4, _frames(spec, imgs, faces), SIZE, audio, fps=FPS)
            write_json(truth_p, {"version": VERSION, "fps": FPS, "size": list(SIZE), "n_frames": len(faces),
                                 "faces": faces, **meta})
        out[name] = mp4
    return out


__all__ = ["photos", "make_clips", "CLIPS", "FACE_BOX", "Photo", "place", "render", "Layer",
           "PhotosUnavailable", "cache_dir"]


if __name__ == "__main__":   # python -m testdata.realclips DIR [NAME ...]
    import argparse

    ap = argparse.ArgumentParser(description="Render the real-photo regression clips (mp4 + truth.json).")
    ap.add_argument("dest", type=Path)
    ap.add_argument("names", nargs="*", help=f"clips to make (default all: {', '.join(CLIPS)})")
    a = ap.parse_args()
    for n, p in make_clips(a.dest, a.names or None).items():
        print(n, p)
