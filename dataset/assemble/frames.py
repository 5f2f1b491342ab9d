"""Pictures of the source video for the report: a frame with the kept face's box and landmarks, a whole
frame showing every face and which one was kept, and short animated previews with the code curves.

All drawing is PIL on frames decoded by pipeline.media; everything here is a courtesy to the reader, so
callers catch failures (a moved or deleted video must not fail a build)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path

KEPT = (46, 204, 64)       # green: the face the dataset kept
OTHER = (255, 65, 54)      # red: faces on screen that were not kept
LANDMARK = (255, 220, 0)


def read_track(faces_dir: str | Path) -> dict | None:
    """The kept face's per-frame arrays (t, box, landmarks, valid) of a faces cache entry, or None when
    the entry has no track (a rejected segment) or cannot be read."""
    from pipeline.formats import FormatError
    from pipeline.formats.track import has_track, read_track as read

    if not faces_dir or not has_track(faces_dir):
        return None
    try:
        return read(faces_dir, keys=("box", "landmarks", "valid"))
    except FormatError:
        return None


def decode_frames(video: str, start: float, end: float, fps: float, max_side: int = 640):
    """(frames, times from the segment start, scale) of [start, end) at `fps`."""
    from pipeline.media import decode

    frames, ts, scale = [], [], 1.0
    for batch in decode(video, start=start, end=end, fps=fps, max_side=max_side):
        scale = batch.scale
        frames += list(batch.frames)
        ts += [float(t) - start for t in batch.t]
    return frames, np.asarray(ts, np.float64), scale


def one_frame(video: str, start: float, end: float, t: float):
    """The frame `t` seconds after the segment start (clamped into the segment), and its scale."""
    t0 = start + min(max(t, 0.0), max(0.0, end - start - 0.05))
    frames, _, scale = decode_frames(video, t0, min(end, t0 + 0.5), fps=4)
    if not frames:
        raise RuntimeError(f"no frame decoded at {t0:.2f} s of {video}")
    return frames[0], scale


def _nearest(track: dict, t: float) -> int | None:
    if track is None or not len(track.get("t", [])):
        return None
    valid = track["valid"].astype(bool)
    cand = np.flatnonzero(valid) if valid.any() else np.arange(len(track["t"]))
    return int(cand[np.argmin(np.abs(track["t"][cand] - t))])


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:   # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _fit(img, box, landmarks, scale: float, crop=None, size: int | None = None):
    """Crop and resize `img` (a frame decoded at `scale`), returning it with the box and landmarks mapped
    into its pixels, so drawing happens at the final size (crisp lines, readable labels)."""
    x_off, y_off = (crop[0], crop[1]) if crop else (0, 0)
    if crop:
        img = img.crop(crop)
    k = 1.0
    if size and max(img.size) != size:
        k = size / max(img.size)
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))))
    f = lambda x, y: ((x * scale - x_off) * k, (y * scale - y_off) * k)  # noqa: E731
    b = None if box is None else (*f(box[0], box[1]), *f(box[2], box[3]))
    lm = None if landmarks is None else [f(float(x), float(y)) for x, y in np.asarray(landmarks, np.float32)[:, :2]]
    return img, b, lm


def _draw(img, box, landmarks, color, label: str = "", width: int = 2) -> None:
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    if box is not None:
        d.rectangle(box, outline=color, width=width)
    for x, y in landmarks or []:
        d.point((x, y), fill=LANDMARK)
    if label and box is not None:
        font = _font(13)
        x0, y0 = box[0], box[1]
        tw = d.textlength(label, font=font) + 8
        top = max(0, y0 - 18)
        d.rectangle([x0, top, x0 + tw, top + 17], fill=color)
        d.text((x0 + 4, top + 1), label, fill=(0, 0, 0), font=font)


def _save(img, dest: Path, fmt: str, **kw) -> str:
    with atomic_path(dest) as tmp:
        img.save(tmp, format=fmt, **kw)
    return f"report/{dest.name}"


def face_frame(video: str, start: float, end: float, faces_dir: str, dest: Path, size: int = 240) -> str:
    """The middle frame, cropped around the kept face (2× its box), box and landmarks drawn."""
    from PIL import Image

    track = read_track(faces_dir)
    mid = 0.5 * (end - start)
    i = _nearest(track, mid)
    frame, scale = one_frame(video, start, end, float(track["t"][i]) if i is not None else mid)
    img = Image.fromarray(np.ascontiguousarray(frame))
    if i is None:
        img.thumbnail((size, size))
        return _save(img, dest, "JPEG", quality=85)
    box = track["box"][i]
    lm = track["landmarks"][i].astype(np.float32) if "landmarks" in track else None
    if lm is not None and not np.abs(lm).sum() > 0:
        lm = None
    x0, y0, x1, y1 = [float(v) * scale for v in box]
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    crop = (int(max(0, cx - half)), int(max(0, cy - half)), int(min(img.width, cx + half)),
            int(min(img.height, cy + half)))
    if crop[2] - crop[0] < 8 or crop[3] - crop[1] < 8:
        crop = None
    img, b, pts = _fit(img, box, lm, scale, crop, size)
    _draw(img, b, pts, KEPT)
    return _save(img, dest, "JPEG", quality=88)


def overview_frame(video: str, start: float, end: float, overview: dict, dest: Path, width: int = 480) -> str:
    """The whole frame with every face the faces stage tracked: the kept one green, the others red."""
    from PIL import Image

    frame, scale = one_frame(video, start, end, float(overview.get("t", 0.0)))
    img = Image.fromarray(np.ascontiguousarray(frame))
    img, _, _ = _fit(img, None, None, scale, None, width)
    k = img.width / frame.shape[1] * scale   # original px → final px
    boxes = overview.get("boxes") or []
    kept = int(overview.get("kept", -1))
    for j, box in enumerate(boxes):
        if box is not None and j != kept:
            _draw(img, [v * k for v in box], None, OTHER, f"face {j + 1}: not kept", width=3)
    if 0 <= kept < len(boxes) and boxes[kept] is not None:
        _draw(img, [v * k for v in boxes[kept]], None, KEPT, f"face {kept + 1}: kept", width=3)
    return _save(img, dest, "JPEG", quality=88)


def plain_frame(video: str, start: float, end: float, dest: Path, width: int = 320) -> str:
    from PIL import Image

    frame, _ = one_frame(video, start, end, 0.5 * (end - start))
    img = Image.fromarray(np.ascontiguousarray(frame))
    img.thumbnail((width, width))
    return _save(img, dest, "JPEG", quality=85)


def _curve_panel(codes: np.ndarray, fps: float, dims: list[str], w: int, h: int, k: int = 4):
    """The k most moving code curves as an RGB array, and a function mapping seconds to pixel x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.2, 0.9, 0.72))
    t = np.arange(codes.shape[0]) / fps
    for d in np.argsort(-codes.std(0), kind="stable")[:k]:
        ax.plot(t, codes[:, d], lw=1.2, label=dims[d] if d < len(dims) else str(d))
    ax.set_xlim(0, max(t[-1] if len(t) else 1.0, 1e-3))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("seconds", fontsize=6, labelpad=1)
    ax.legend(fontsize=5, loc="upper right", ncol=2)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    to_x = lambda s: float(ax.transData.transform((s, 0))[0])  # noqa: E731 - display x == pixel x
    return rgb, to_x


def preview(video: str, start: float, end: float, faces_dir: str, codes: np.ndarray, fps: float,
            dims: list[str], dest: Path, seconds: float = 3.0, rate: float = 8.0, size: int = 144) -> str:
    """An animated WebP: the face crop (box drawn) beside the code curves with a moving time cursor,
    the first `seconds` of the segment at `rate` frames per second."""
    from PIL import Image, ImageDraw

    track = read_track(faces_dir)
    frames, ts, scale = decode_frames(video, start, min(end, start + seconds), fps=rate, max_side=480)
    if not frames:
        raise RuntimeError(f"no frames decoded from {video} at {start:.2f} s")
    panel, to_x = _curve_panel(np.asarray(codes, np.float32), fps, dims, 2 * size, size)
    box = None
    if track is not None and track["valid"].any():   # one steady crop: the kept face's median box
        box = np.median(track["box"][track["valid"].astype(bool)], axis=0) * scale
    out = []
    for frame, t in zip(frames, ts):
        img = Image.fromarray(np.ascontiguousarray(frame))
        crop = None
        if box is not None:
            x0, y0, x1, y1 = box
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
            crop = (int(max(0, cx - half)), int(max(0, cy - half)), int(min(img.width, cx + half)),
                    int(min(img.height, cy + half)))
        i = _nearest(track, t)
        img, b, _ = _fit(img, track["box"][i] if i is not None else None, None, scale, crop, None)
        kx, ky = size / img.width, size / img.height
        img = img.resize((size, size))
        if b is not None:
            _draw(img, [b[0] * kx, b[1] * ky, b[2] * kx, b[3] * ky], None, KEPT)
        canvas = Image.new("RGB", (3 * size, size), "white")
        canvas.paste(img, (0, 0))
        curves = Image.fromarray(panel)
        ImageDraw.Draw(curves).line([(to_x(t), 0), (to_x(t), size)], fill=(200, 0, 0), width=2)
        canvas.paste(curves, (size, 0))
        out.append(canvas)
    with atomic_path(dest) as tmp:
        out[0].save(tmp, format="WEBP", save_all=True, append_images=out[1:], duration=int(1000 / rate), loop=0,
                    quality=60, method=4)
    return f"report/{dest.name}"
