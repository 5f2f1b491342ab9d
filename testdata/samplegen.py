"""Generated sample media: talking-face clips with known ground truth, in every source layout.

No package ships a face video, so the sample is built from `skimage.data.astronaut()` (a real face):
the mouth, mouth corners and brows are moved by smooth displacement fields (cv2.remap) driven by
known signals, the face is framed by an affine placement (close-up, small wide shot, two-shot), and
ffmpeg encodes H.264 + AAC with fixed settings so two runs give byte-identical files. Each talking
clip keeps its truth beside it in `<clip>.signals.json`:

    {"fps": 25 | null (VFR), "t": [...], "mouth_open": [...], "smile": [...], "brow_raise": [...],
     "face_boxes": per frame [[x0,y0,x1,y1], ...] (the driven face first), "speaker_face": 0,
     "shots": [cut times], "size": [w, h], "sentences": [{"start", "end", "text"}]}

Signals are in [0, 1]: mouth_open 0 = closed; smile 1 = the astronaut's own smile at rest, 0 = mouth
corners pulled down (the landmarker reads her as smiling at rest, so the smile is driven downward);
brow_raise 0 = rest. The audio is a voice-like signal (harmonics + band-limited noise) whose
loudness follows the driven face's mouth_open, so an audio–mouth correlation can pick the speaker.
"""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from pipeline.atomic import atomic_dir, atomic_path, write_json, write_text

GENERATOR_VERSION = "2"   # 2: the `speech` part (real recorded speech, no captions)
FPS = 25
SIZE = (640, 360)
AUDIO_RATE = 16000
PARTS = ("folder", "table", "meld", "web", "speech")

# Landmarks of skimage.data.astronaut() (512x512), measured by eye on the image.
_FACE_BOX = (180.0, 62.0, 266.0, 182.0)   # forehead-to-chin box
_MOUTH = (222.0, 149.0)                    # centre of the lip line (bottom of the upper teeth)
_MOUTH_HALF_W = 19.0
_CORNERS = ((204.0, 146.0), (240.0, 146.0))
_BROWS = ((201.0, 93.0), (247.0, 93.0))
_FACE_CENTER = (223.0, 122.0)
# Displacement amplitudes in astronaut pixels at signal 1: wide, because the landmarker's jawOpen
# reacts weakly to small lip warps (a measured jawOpen of 0.013 → ~0.06 for an 18-px warp).
_JAW_PX = 24.0
_CORNER_PX = 9.0
_BROW_PX = 7.0

# Fixed encoder settings: single-threaded x264 and bitexact muxing make the output reproducible.
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "24", "-g", "50", "-threads", "1",
         "-pix_fmt", "yuv420p", "-flags:v", "+bitexact"]
_AAC = ["-c:a", "aac", "-b:a", "32k", "-ar", str(AUDIO_RATE), "-ac", "1", "-flags:a", "+bitexact"]
_MUX = ["-map_metadata", "-1", "-fflags", "+bitexact", "-movflags", "+faststart"]


# --------------------------------------------------------------------------------------------
# the face
# --------------------------------------------------------------------------------------------

def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class FaceRig:
    """The astronaut with three smooth displacement fields (backward maps for cv2.remap)."""

    def __init__(self):
        from skimage import data

        self.img = np.ascontiguousarray(data.astronaut())
        h, w = self.img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.xx, self.yy = xx, yy
        mx, my = _MOUTH
        # jaw: everything below the lip line moves down, fully near mouth and chin, fading towards the
        # cheeks (x) and the neck (y). Across the mouth the displacement jumps at the lip line (the tear
        # is the mouth cavity); beside it, it ramps smoothly so the cheeks stretch instead of tearing.
        self.w_jaw_x = (1 - _smoothstep((np.abs(xx - mx) - 30) / 26)).astype(np.float32)
        self.w_jaw_neck = (1 - _smoothstep((yy - (my + 40)) / 40)).astype(np.float32)
        self.mouth_sharp = (1 - _smoothstep((np.abs(xx - mx) - (_MOUTH_HALF_W - 9)) / 14)).astype(np.float32)
        # mouth corners: Gaussian bumps pulled down and slightly inwards
        self.w_corner_y = np.zeros((h, w), np.float32)
        self.w_corner_x = np.zeros((h, w), np.float32)
        for (cx, cy), side in zip(_CORNERS, (-1, 1)):
            g = np.exp(-(((xx - cx) / 9) ** 2 + ((yy - cy) / 8) ** 2) / 2)
            self.w_corner_y += g
            self.w_corner_x += side * g
        # brows: wide Gaussians over both brows and the forehead above them
        self.w_brow = np.zeros((h, w), np.float32)
        for bx, by in _BROWS:
            self.w_brow += np.exp(-(((xx - bx) / 20) ** 2 + ((yy - by) / 11) ** 2) / 2)
        self.w_brow = np.minimum(self.w_brow, 1.0).astype(np.float32)
        self._y0, self._y1, self._x0, self._x1 = 40, 240, 130, 320   # the only region that changes
        self._cache: dict = {}

    def render(self, mouth_open: float, smile: float, brow_raise: float) -> np.ndarray:
        """The 512x512 astronaut with the given expression (signals in [0, 1])."""
        key = (round(mouth_open, 4), round(smile, 4), round(brow_raise, 4))
        if key in self._cache:
            return self._cache[key]
        import cv2

        y0, y1, x0, x1 = self._y0, self._y1, self._x0, self._x1
        sl = (slice(y0, y1), slice(x0, x1))
        jaw = _JAW_PX * float(mouth_open)
        down = _CORNER_PX * (1.0 - float(smile))
        up = _BROW_PX * float(brow_raise)
        # backward map: output pixel (x, y) samples the source at (x + dx, y + dy)
        ys = self.yy[sl]
        # ramp length below the lip line: 1 px in the mouth (a tear), > 1.5x the jaw drop at the cheeks
        # (smoothstep's slope is at most 1.5, so the map stays monotonic there: no fold, no cavity)
        ramp_len = 1.0 + (1 - self.mouth_sharp[sl]) * (2.0 * jaw + 2.0)
        ramp = _smoothstep((ys - _MOUTH[1]) / ramp_len)
        dy_jaw = -jaw * self.w_jaw_x[sl] * ramp * self.w_jaw_neck[sl]
        dy = dy_jaw - down * self.w_corner_y[sl] + up * self.w_brow[sl]
        dx = down * 0.4 * self.w_corner_x[sl]
        map_x = self.xx[sl] + dx
        map_y = ys + dy
        out = self.img.copy()
        patch = cv2.remap(self.img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if jaw > 0.5:
            # pixels below the lip line that sample from above it are the open mouth: a dark cavity
            cavity = ((ys >= _MOUTH[1]) & (ys + dy_jaw < _MOUTH[1] - 0.5)).astype(np.float32)
            cavity = cv2.GaussianBlur(cavity, (5, 5), 1.0)[..., None]
            dark = np.array([45, 12, 18], np.float32)
            patch = (patch.astype(np.float32) * (1 - cavity) + dark * cavity).round().astype(np.uint8)
        out[sl] = patch
        if len(self._cache) < 64:
            self._cache[key] = out
        return out


_RIG: FaceRig | None = None


def _rig() -> FaceRig:
    global _RIG
    if _RIG is None:
        _RIG = FaceRig()
    return _RIG


def _place(scale: float, dst_center: tuple[float, float], mirror: bool = False) -> np.ndarray:
    """Affine map astronaut -> frame: the face centre lands on dst_center, scaled by `scale`."""
    cx, cy = _FACE_CENTER
    sx = -scale if mirror else scale
    return np.array([[sx, 0, dst_center[0] - sx * cx], [0, scale, dst_center[1] - scale * cy]], np.float64)


def _face_box(M: np.ndarray, mouth_open: float) -> list[float]:
    x0, y0, x1, y1 = _FACE_BOX
    y1 += _JAW_PX * mouth_open * 0.8   # the chin moves down with the jaw
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ M.T
    return [round(float(v), 1) for v in (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())]


@dataclass
class FaceOnScreen:
    M: np.ndarray
    driven: bool = True        # follows the clip's signals; otherwise a still, neutral face
    viewport: tuple[int, int, int, int] | None = None   # (x, y, w, h) of the frame this face's picture fills


@dataclass
class Shot:
    faces: list[FaceOnScreen] = field(default_factory=list)
    background: Callable[[float], np.ndarray] | None = None   # frame-sized RGB for time t


def _render_frame(shot: Shot, size: tuple[int, int], sig: tuple[float, float, float], t: float) -> np.ndarray:
    import cv2

    w, h = size
    rig = _rig()
    if shot.background is not None:
        frame = shot.background(t).copy()
    else:
        frame = None
    for face in shot.faces:
        img = rig.render(*sig) if face.driven else rig.render(0.0, 1.0, 0.0)
        if face.viewport is not None:
            # the picture fills its own part of the frame (a two-shot: one astronaut per half)
            vx, vy, vw, vh = face.viewport
            M = face.M - np.array([[0, 0, vx], [0, 0, vy]])
            if frame is None:
                frame = np.zeros((h, w, 3), np.uint8)
            frame[vy:vy + vh, vx:vx + vw] = cv2.warpAffine(img, M, (vw, vh), flags=cv2.INTER_LINEAR,
                                                           borderMode=cv2.BORDER_REPLICATE)
        elif frame is None:
            frame = cv2.warpAffine(img, face.M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            # paste only where the astronaut picture lands (a face in front of a background)
            mask = cv2.warpAffine(np.full(img.shape[:2], 255, np.uint8), face.M, (w, h), flags=cv2.INTER_NEAREST)
            warped = cv2.warpAffine(img, face.M, (w, h), flags=cv2.INTER_LINEAR)
            frame[mask > 0] = warped[mask > 0]
    if frame is None:
        frame = np.full((h, w, 3), 128, np.uint8)
    return frame


def _still_background(name: str, size: tuple[int, int]) -> Callable[[float], np.ndarray]:
    """A face-free skimage picture, slowly zooming (so the shot is not a frozen frame)."""
    import cv2
    from skimage import data

    img = getattr(data, name)()
    w, h = size
    ih, iw = img.shape[:2]

    def bg(t: float) -> np.ndarray:
        z = 1.0 + 0.04 * t
        s = max(w / iw, h / ih) * z
        M = np.array([[s, 0, w / 2 - s * iw / 2], [0, s, h / 2 - s * ih / 2]])
        return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return bg


# --------------------------------------------------------------------------------------------
# driving signals, captions, audio
# --------------------------------------------------------------------------------------------

@dataclass
class Sentence:
    start: float
    end: float
    text: str

    def words(self) -> list[tuple[str, float, float]]:
        ws = self.text.split()
        step = (self.end - self.start) / len(ws)
        return [(wd, self.start + i * step, self.start + (i + 1) * step) for i, wd in enumerate(ws)]


def time_sentences(texts: Sequence[str], windows: Sequence[tuple[float, float]]) -> list[Sentence]:
    """Spread sentences over speaking windows, each sentence's length proportional to its words."""
    out: list[Sentence] = []
    per_window = [[] for _ in windows]
    for i, txt in enumerate(texts):
        per_window[min(i * len(windows) // len(texts), len(windows) - 1)].append(txt)
    gap = 0.3
    for (a, b), txts in zip(windows, per_window):
        if not txts:
            continue
        n_words = [len(t.split()) for t in txts]
        avail = (b - a) - gap * (len(txts) - 1)
        t = a
        for txt, nw in zip(txts, n_words):
            d = avail * nw / sum(n_words)
            out.append(Sentence(round(t, 3), round(t + d, 3), txt))
            t += d + gap
    return out


def make_signals(t: np.ndarray, sentences: Sequence[Sentence], seed: int) -> dict[str, np.ndarray]:
    """mouth_open: syllable bumps (~4.5/s) inside sentences, closed between them; smile: slow dips
    below the resting smile; brow_raise: a raise at each sentence onset plus occasional extra ones."""
    rng = np.random.default_rng(seed)
    t = np.asarray(t, np.float64)
    mouth = np.zeros_like(t)
    for s in sentences:
        c = s.start + 0.1
        while c < s.end - 0.05:
            width = rng.uniform(0.16, 0.26)
            amp = rng.uniform(0.55, 1.0)
            x = (t - c) / width
            mouth += amp * np.where(np.abs(x) < 1, 0.5 * (1 + np.cos(np.pi * x)), 0.0)
            c += rng.uniform(0.18, 0.27)
    mouth = np.clip(mouth, 0, 1)
    k = np.arange(1, 4)
    freqs = rng.uniform(0.15, 0.6, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    wave_ = (np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None]) / k).sum(1)
    smile = np.clip(0.55 + 0.45 * wave_ / (1 / k).sum(), 0, 1)
    brow = np.zeros_like(t)
    onsets = [s.start for s in sentences] + list(rng.uniform(0, t.max() if len(t) else 1, 1))
    for c in onsets:
        x = (t - c - 0.3) / 0.45
        brow += rng.uniform(0.6, 1.0) * np.where(np.abs(x) < 1, 0.5 * (1 + np.cos(np.pi * x)), 0.0)
    brow = np.clip(brow, 0, 1)
    return {"mouth_open": mouth, "smile": smile, "brow_raise": brow}


def make_voice(duration: float, t_sig: np.ndarray, loudness: np.ndarray, seed: int) -> np.ndarray:
    """A voice-like signal (harmonic series with a wandering pitch + band-limited noise) whose
    envelope follows `loudness` (the driven mouth's opening). float32 in [-1, 1] at AUDIO_RATE."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(round(duration * AUDIO_RATE))
    ta = np.arange(n) / AUDIO_RATE
    env = np.interp(ta, t_sig, loudness, left=0.0, right=0.0) if len(t_sig) else np.zeros(n)
    f0 = 135 + 18 * np.sin(2 * np.pi * 0.8 * ta + rng.uniform(0, 6)) + 8 * np.sin(2 * np.pi * 3.1 * ta)
    phase = 2 * np.pi * np.cumsum(f0) / AUDIO_RATE
    harm = sum(np.sin(k * phase) / k for k in range(1, 16))
    noise = sosfilt(butter(4, [300, 3400], btype="band", fs=AUDIO_RATE, output="sos"), rng.standard_normal(n))
    voice = 0.7 * harm / 2.5 + 0.3 * noise / (np.std(noise) + 1e-9) / 3
    floor = 0.002 * rng.standard_normal(n)   # room noise, so silence is not digital zero
    return np.clip(0.5 * env * voice + floor, -1, 1).astype(np.float32)


def speech_mouth(audio: np.ndarray, t: np.ndarray) -> np.ndarray:
    """mouth_open in [0, 1] at frame times `t` from real speech: its loudness (RMS over 40 ms, in dB)
    mapped from 30 dB below the loudest frame (closed) to 6 dB below it (open), lightly smoothed, so the
    mouth opens on syllables and closes in pauses as a speaker's does."""
    half = int(0.02 * AUDIO_RATE)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    idx = np.clip((np.asarray(t) * AUDIO_RATE).astype(int), 0, len(audio))
    a, b = np.clip(idx - half, 0, len(audio)), np.clip(idx + half, 0, len(audio))
    db = 10 * np.log10((c[b] - c[a]) / np.maximum(1, b - a) + 1e-10)
    top = np.percentile(db, 98) if len(db) else 0.0
    m = np.clip((db - (top - 30)) / 24.0, 0, 1)
    k = np.array([0.25, 0.5, 0.25])
    return np.clip(np.convolve(m, k, "same"), 0, 1)


def _fmt_vtt_time(s: float) -> str:
    ms = int(round(s * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_text(sentences: Sequence[Sentence]) -> str:
    lines = ["WEBVTT", ""]
    for i, s in enumerate(sentences, 1):
        lines += [str(i), f"{_fmt_vtt_time(s.start)} --> {_fmt_vtt_time(s.end)}", s.text, ""]
    return "\n".join(lines)


def rolling_vtt_text(sentences: Sequence[Sentence], words_per_line: int = 4) -> str:
    """YouTube auto-caption style: each cue shows the previous line again, then the new words with
    inline <hh:mm:ss.mmm><c> word-time tags; a 10 ms cue freezes each finished line."""
    words = [w for s in sentences for w in s.words()]
    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    prev = ""
    for i in range(0, len(words), words_per_line):
        chunk = words[i:i + words_per_line]
        a, b = chunk[0][1], chunk[-1][2]
        tagged = chunk[0][0] + "".join(f"<{_fmt_vtt_time(ws)}><c> {wd}</c>" for wd, ws, _ in chunk[1:])
        out += [f"{_fmt_vtt_time(a)} --> {_fmt_vtt_time(b - 0.01)} align:start position:0%",
                prev if prev else " ", tagged, ""]
        line = " ".join(wd for wd, _, _ in chunk)
        out += [f"{_fmt_vtt_time(b - 0.01)} --> {_fmt_vtt_time(b)} align:start position:0%", line, " ", ""]
        prev = line
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------

def _write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(pcm.tobytes())


def _setpts_expr(times: np.ndarray) -> str:
    """A setpts expression giving frame N the timestamp times[N]: piecewise-constant frame steps."""
    d = np.round(np.diff(times), 6)
    pieces, i = [], 0
    while i < len(d):
        j = i
        while j + 1 < len(d) and abs(d[j + 1] - d[i]) < 1e-6:
            j += 1
        pieces.append((i, float(times[i]), float(d[i])))   # from frame i on: times[i] + (N-i)*d
        i = j + 1
    n0, t0, step = pieces[-1]
    expr = f"{t0!r}+(N-{n0})*{step!r}"
    for k in range(len(pieces) - 2, -1, -1):
        n0, t0, step = pieces[k]
        expr = f"if(lt(N,{pieces[k + 1][0]}),{t0!r}+(N-{n0})*{step!r},{expr})"
    return f"({expr})/TB"


def encode(dest: Path, frames: Iterable[np.ndarray], size: tuple[int, int], audio: np.ndarray | None,
           fps: float = FPS, times: np.ndarray | None = None) -> Path:
    """Pipe RGB frames (and optional mono audio) into a deterministic H.264/AAC mp4, atomically.
    `times` (per-frame seconds) makes a variable-frame-rate file with exactly those timestamps."""
    from pipeline.media import ffmpeg_exe

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with tempfile.TemporaryDirectory(prefix=".samplegen-", dir=dest.parent) as td:
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(td) / "a.wav"
            _write_wav(wav, audio)
            args += ["-i", str(wav), "-map", "0:v", "-map", "1:a"] + _AAC
        args += _X264
        if times is not None:
            # settb first: setpts computes in the link's time base, and the raw input's 1/25 would round
            args += ["-vf", f"settb=1/600,setpts='{_setpts_expr(np.asarray(times))}'", "-fps_mode", "passthrough",
                     "-enc_time_base", "1/600", "-video_track_timescale", "600"]
        args += _MUX
        errf = Path(td) / "err.txt"
        with atomic_path(dest) as tmp, open(errf, "wb") as err:
            proc = subprocess.Popen(args + [str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for f in frames:
                    if f.shape != (h, w, 3) or f.dtype != np.uint8:
                        raise ValueError(f"{dest}: frame {f.shape} {f.dtype}, expected ({h}, {w}, 3) uint8")
                    proc.stdin.write(np.ascontiguousarray(f).tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass   # ffmpeg died: its exit status and stderr below say why
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            rc = proc.wait()
            if rc != 0:
                raise RuntimeError(f"ffmpeg failed encoding {dest}: {errf.read_text(errors='replace')[-800:]}")
    return dest


# --------------------------------------------------------------------------------------------
# clips
# --------------------------------------------------------------------------------------------

@dataclass
class ClipSpec:
    name: str
    duration: float
    texts: Sequence[str]
    seed: int
    shots: Callable[[float], Shot]
    size: tuple[int, int] = SIZE
    windows: Sequence[tuple[float, float]] | None = None   # speaking windows; default: the whole clip
    cuts: Sequence[float] = ()
    times: np.ndarray | None = None                         # VFR frame times
    properties: Sequence[str] = ()
    speaker: str = "astronaut"
    audio: np.ndarray | None = None                         # real speech (AUDIO_RATE): drives the mouth
    truth: Sequence[dict] | None = None                     # its sentences [{start, end, text, words}]


def make_clip(spec: ClipSpec, dest: Path, captions: bool = True) -> dict:
    """Render, encode and describe one talking clip: mp4 (+ .vtt) + .signals.json."""
    vfr = spec.times is not None
    t = np.asarray(spec.times, np.float64) if vfr else np.arange(int(round(spec.duration * FPS))) / FPS
    windows = spec.windows or [(0.25, spec.duration - 0.25)]
    if spec.audio is not None:   # real speech: the mouth follows its loudness, the truth is its own
        sentences = [Sentence(x["start"], x["end"], x["text"]) for x in spec.truth or []]
        sig = make_signals(t, sentences, spec.seed)
        sig["mouth_open"] = speech_mouth(spec.audio, t)
    else:
        sentences = time_sentences(spec.texts, windows)
        sig = make_signals(t, sentences, spec.seed)
    boxes: list[list[list[float]]] = []

    def frames():
        for i, ti in enumerate(t):
            s = (float(sig["mouth_open"][i]), float(sig["smile"][i]), float(sig["brow_raise"][i]))
            shot = spec.shots(float(ti))
            boxes.append([_face_box(f.M, s[0] if f.driven else 0.0) for f in
                          sorted(shot.faces, key=lambda f: not f.driven)])
            yield _render_frame(shot, spec.size, s, float(ti))

    t_audio = np.append(t, spec.duration)
    audio = spec.audio if spec.audio is not None else \
        make_voice(spec.duration, t_audio, np.append(sig["mouth_open"], 0.0), spec.seed + 1000)
    encode(dest, frames(), spec.size, audio, times=t if vfr else None)
    signals = {
        "fps": None if vfr else FPS, "size": list(spec.size), "duration": spec.duration,
        "t": [round(float(x), 6) for x in t],
        **{k: [round(float(x), 4) for x in v] for k, v in sig.items()},
        "face_boxes": boxes, "speaker_face": 0, "shots": list(spec.cuts),
        "sentences": [{"start": s.start, "end": s.end, "text": s.text} for s in sentences],
        **({"words": [w for x in spec.truth for w in x.get("words", [])]} if spec.truth else {}),
        "notes": "signals in [0,1]; smile 1 = resting smile, 0 = corners pulled down; "
                 "face_boxes list the driven (speaking) face first",
    }
    write_json(dest.with_suffix(".signals.json"), signals)
    if captions:
        write_text(dest.with_suffix(".vtt"), vtt_text(sentences))
    return {"path": dest.name, "duration": spec.duration, "size": list(spec.size), "fps": None if vfr else FPS,
            "n_frames": len(t), "vfr": vfr, "properties": list(spec.properties), "speaker": spec.speaker,
            "signals": dest.with_suffix(".signals.json").name,
            "captions": dest.with_suffix(".vtt").name if captions else None,
            "sentences": signals["sentences"], "shots": list(spec.cuts),
            "max_faces": max((len(b) for b in boxes), default=0)}


def _wall(size: tuple[int, int]) -> Callable[[float], np.ndarray]:
    """A plain, softly lit wall (no texture that could look like a face)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.25 * np.hypot((xx - 0.3 * w) / w, (yy - 0.2 * h) / h)
    img = (np.array([196, 188, 176], np.float32) * light[..., None]).clip(0, 255).astype(np.uint8)
    return lambda t: img


_WALL_720 = _wall((1280, 720))


def _closeup(t: float) -> Shot:
    # slow camera drift so consecutive frames differ like real footage
    return Shot([FaceOnScreen(_place(2.0, (320 + 6 * math.sin(0.9 * t), 175 + 4 * math.sin(0.6 * t))))])


def _medium(t: float) -> Shot:
    # the picture must cover the frame at this scale: face centre x in [264, 290], y <= 158
    return Shot([FaceOnScreen(_place(1.3, (277 - 10 * math.sin(0.4 * t), 150)))])


def _small_face(t: float) -> Shot:
    # 1280x720 wide shot: the face is ~125 px, about a tenth of the frame width
    return Shot([FaceOnScreen(_place(1.45, (860 + 10 * math.sin(0.5 * t), 300)))], background=_WALL_720)


def _two_shot(t: float) -> Shot:
    # two astronauts side by side; only the left one (first) talks, the right one is a still mirror
    return Shot([FaceOnScreen(_place(1.35, (165, 175)), viewport=(0, 0, 320, 360)),
                 FaceOnScreen(_place(1.35, (480, 175), mirror=True), driven=False, viewport=(320, 0, 320, 360))])


def _cut_shots() -> Callable[[float], Shot]:
    rocket = _still_background("rocket", SIZE)
    no_face = Shot([], background=lambda t: rocket(t - 2.0))
    return lambda t: _closeup(t) if t < 2.0 else (no_face if t < 3.0 else _medium(t))


def _vfr_times() -> np.ndarray:
    # 0-2 s at 25 fps, 2-4 s at 10 fps, 4-5 s at 30 fps: steps exact in a 1/600 time base
    return np.concatenate([np.arange(50) / 25, 2 + np.arange(20) / 10, 4 + np.arange(30) / 30])


_TEXTS = {
    "talk_01": ["Hello there, it is good to see you again.", "Today we talk about the launch.",
                "I think it went really well!"],
    "talk_02": ["The view from orbit is something else.", "You can see the whole coast at once."],
    "talk_03": ["Small faces are hard to find.", "This one is far from the camera.",
                "Can you still see me?"],
    "cut": ["Let me show you the rocket.", "And here I am again."],
    "two_faces": ["Only one of us is talking now.", "My friend on the right stays quiet."],
    "vfr": ["This clip has a variable frame rate.", "Timestamps are not evenly spaced."],
    "table_01": ["Welcome to the table source.", "Every row has its own span."],
    "table_02": ["I am feeling rather sad today.", "But tomorrow will be better!"],
}


def _folder_specs() -> list[ClipSpec]:
    return [
        ClipSpec("talk_01", 5.0, _TEXTS["talk_01"], 11, _closeup, properties=["talking", "closeup"]),
        ClipSpec("talk_02", 4.0, _TEXTS["talk_02"], 12, _medium, properties=["talking", "medium"]),
        ClipSpec("talk_03", 4.4, _TEXTS["talk_03"], 13, _small_face, size=(1280, 720),
                 properties=["talking", "small_face"]),
        ClipSpec("cut", 5.0, _TEXTS["cut"], 14, _cut_shots(), windows=[(0.2, 1.8), (3.2, 4.8)], cuts=[2.0, 3.0],
                 properties=["talking", "shot_cut", "no_face_stretch"]),
        ClipSpec("two_faces", 4.4, _TEXTS["two_faces"], 15, _two_shot, properties=["talking", "two_faces"]),
        ClipSpec("vfr", 5.0, _TEXTS["vfr"], 16, _closeup, times=_vfr_times(), properties=["talking", "vfr"]),
    ]


# --------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------

def _gen_folder(root: Path) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    return [dict(make_clip(s, root / f"{s.name}.mp4"), path=f"folder/{s.name}.mp4") for s in _folder_specs()]


def _gen_table(root: Path) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    specs = [ClipSpec("table_01", 4.0, _TEXTS["table_01"], 21, _closeup, properties=["talking"], speaker="Ann"),
             ClipSpec("table_02", 4.0, _TEXTS["table_02"], 22, _medium, properties=["talking"], speaker="Bea")]
    emotions = {"table_01": ["joy", "neutral"], "table_02": ["sadness", "joy"]}
    rows, out = [], []
    for i, s in enumerate(specs):
        info = make_clip(s, root / "clips" / f"{s.name}.mp4", captions=False)
        info["path"] = f"table/clips/{s.name}.mp4"
        out.append(info)
        for sent, emo in zip(info["sentences"], emotions[s.name]):
            rows.append([f"clips/{s.name}.mp4", f"{sent['start']:.3f}", f"{sent['end']:.3f}", sent["text"],
                         s.speaker, emo, "train" if i == 0 else "test"])
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["video", "start", "end", "text", "speaker", "emotion", "split"])
    wr.writerows(rows)
    write_text(root / "table.csv", buf.getvalue())
    return out


_MELD_COLS = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
              "Season", "Episode", "StartTime", "EndTime"]
_MELD_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
# (split, dia, utt, text, speaker, emotion, sentiment, start, end, clip?) — the quirks of the real CSVs:
# one-digit hours, curly quotes, an ellipsis, a zero-length span, a row whose clip is missing.
_MELD_ROWS = [
    ("train", 0, 0, "Oh my God, you\u2019re back!", "Rachel", "surprise", "positive",
     "0:00:20,256", "0:00:21,840", True),
    ("train", 0, 1, "Well\u2026 I said I\u2019d be here.", "Ross", "neutral", "neutral",
     "0:00:22,003", "0:00:23,600", True),
    ("train", 1, 0, "This clip was never cut from the episode.", "Joey", "joy", "positive",
     "00:16:14,017", "00:16:15,917", False),
    ("dev", 0, 0, "\u201cSeriously\u201d? That\u2019s what you say?", "Monica", "anger", "negative",
     "0:05:01,100", "0:05:02,700", True),
    ("dev", 0, 1, "Hmm.", "Chandler", "neutral", "neutral", "0:05:03,000", "0:05:03,000", True),
    ("test", 0, 0, "I can\u2019t believe it\u2026 we did it!", "Phoebe", "joy", "positive",
     "1:02:10,500", "1:02:12,100", True),
]


def _gen_meld(root: Path) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    out, per_split = [], {k: [] for k in _MELD_DIRS}
    for n, (split, dia, utt, text, spk, emo, sent, st, en, has_clip) in enumerate(_MELD_ROWS):
        per_split[split].append([n + 1, text, spk, emo, sent, dia, utt, 3, 7, st, en])
        if not has_clip:
            continue
        name = f"dia{dia}_utt{utt}"
        spec = ClipSpec(name, 1.6, [text], 30 + n, _closeup if n % 2 == 0 else _medium,
                        windows=[(0.15, 1.45)], properties=["talking", "meld"], speaker=spk)
        info = make_clip(spec, root / _MELD_DIRS[split] / f"{name}.mp4", captions=False)
        info.update(path=f"meld/{_MELD_DIRS[split]}/{name}.mp4", split=split)
        out.append(info)
    for split, rows in per_split.items():
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(_MELD_COLS)
        wr.writerows(rows)
        write_text(root / f"{split}_sent_emo.csv", buf.getvalue())
    return out


_INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>wordsmile sample clip</title></head>
<body>
<h1>wordsmile sample clip</h1>
<video controls width="640" src="clip.mp4">
  <track kind="captions" srclang="en" label="English" src="clip.en.vtt" default>
</video>
</body>
</html>
"""


def _gen_web(root: Path) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    spec = ClipSpec("clip", 4.0, ["Welcome to the web route.", "This page serves a video with captions."],
                    41, _closeup, properties=["talking", "web"])
    info = make_clip(spec, root / "clip.mp4", captions=False)
    sentences = [Sentence(**s) for s in info["sentences"]]
    write_text(root / "clip.en.vtt", vtt_text(sentences))
    write_text(root / "rolling.en.vtt", rolling_vtt_text(sentences))
    write_text(root / "index.html", _INDEX_HTML)
    info.update(path="web/clip.mp4", captions="clip.en.vtt", rolling_captions="rolling.en.vtt",
                page="web/index.html")
    return [info]


def _speech_clip(name: str, audio: np.ndarray, truth: list[dict], dest: Path, seed: int, shots, props) -> dict:
    dur = round(len(audio) / AUDIO_RATE, 3)
    spec = ClipSpec(name, dur, [x["text"] for x in truth], seed, shots, properties=["talking", "real_speech", *props],
                    audio=audio, truth=truth)
    return make_clip(spec, dest, captions=False)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _gen_speech(root: Path) -> list[dict]:
    """Real recorded speech (testdata/speech.py: LibriVox, pocketsphinx sdist) on the talking face, with
    no captions: `folder/speech_01.mp4` (two utterances, their texts only in the audio) and a MELD-layout
    corpus (`meld/`, train split) of three rows: dia0_utt0 right; dia0_utt1 whose clip starts 1.3 s
    early, on the end of the neighbour's line (its span is off, as MELD's subtitle-crawled spans are);
    dia0_utt2 whose row text is another sentence than the one said."""
    from testdata.speech import librivox, read_wav, speech_track

    u = {x.name[-4:]: x for x in librivox()}
    out = []
    audio, truth = speech_track([u["0870"], u["0880"]], gaps_s=1.0, lead_s=0.4)
    info = _speech_clip("speech_01", audio, truth, root / "folder" / "speech_01.mp4", 51, _closeup, ["asr"])
    info["path"] = "speech/folder/speech_01.mp4"
    out.append(info)
    # MELD layout
    meld = root / "meld"
    rows = []
    a930, t930 = speech_track([u["0930"]], lead_s=0.2)
    tail = read_wav(u["0870"].wav)[int(5.5 * AUDIO_RATE):int(6.9 * AUDIO_RATE)]   # "...to do for them"
    b880, t880 = speech_track([u["0880"]], lead_s=0.0)
    b_audio = np.concatenate([tail, np.zeros(int(0.2 * AUDIO_RATE), np.float32), b880])
    shift = (len(tail) + int(0.2 * AUDIO_RATE)) / AUDIO_RATE
    t880 = [dict(x, start=round(x["start"] + shift, 3), end=round(x["end"] + shift, 3),
                 words=[(w, round(a + shift, 3), round(b + shift, 3)) for w, a, b in x["words"]]) for x in t880]
    a890, t890 = speech_track([u["0890"]], lead_s=0.2)
    spec = [("dia0_utt0", a930, t930, _sentence(u["0930"].text), "right", _closeup),
            ("dia0_utt1", b_audio, t880, _sentence(u["0880"].text), "starts_early", _medium),
            ("dia0_utt2", a890, t890, _sentence(u["0920"].text), "wrong_text", _closeup)]
    for n, (name, audio, truth, text, role, shots) in enumerate(spec):
        info = _speech_clip(name, audio, truth, meld / "train_splits" / f"{name}.mp4", 61 + n, shots,
                            ["meld_speech", role])
        info.update(path=f"speech/meld/train_splits/{name}.mp4", split="train", row_text=text, role=role)
        out.append(info)
        rows.append([n + 1, text, "Narrator", "neutral", "neutral", 0, n, 1, 1,
                     f"0:00:{10 + 8 * n:02d},000", f"0:00:{10 + 8 * n + int(len(audio) / AUDIO_RATE):02d},000"])
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(_MELD_COLS)
    wr.writerows(rows)
    write_text(meld / "train_sent_emo.csv", buf.getvalue())
    return out


_GENERATORS = {"folder": _gen_folder, "table": _gen_table, "meld": _gen_meld, "web": _gen_web,
               "speech": _gen_speech}


def make_sample(dest: Path, force: bool = False, parts: Iterable[str] | None = None) -> dict:
    """Generate the sample media under `dest` (layout in the module docstring / sample.json) and
    return its index. An existing complete sample is reused unless `force`; a non-empty folder that is
    not a sample is refused rather than overwritten. `parts` limits generation to some layouts."""
    dest = Path(dest)
    parts = tuple(parts) if parts is not None else PARTS
    bad = [p for p in parts if p not in _GENERATORS]
    if bad:
        raise ValueError(f"unknown sample parts {bad}; choose from {list(PARTS)}")
    index_path = dest / "sample.json"
    if index_path.exists() and not force:
        idx = json.loads(index_path.read_text())
        if idx.get("generator_version") == GENERATOR_VERSION and set(parts) <= set(idx.get("parts", [])):
            return idx
    if dest.exists() and any(dest.iterdir()) and not index_path.exists():
        raise FileExistsError(f"{dest} is not empty and holds no sample.json: refusing to overwrite it")
    with atomic_dir(dest, replace=True) as tmp:
        from pipeline.progress import progress

        clips: list[dict] = []
        for p in progress(parts, "test media", unit="layout"):   # ~10 s of encoding: say where it is
            for c in _GENERATORS[p](tmp / p):
                c["kind"] = p
                clips.append(c)
        files = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
        idx = {"generator_version": GENERATOR_VERSION, "parts": list(parts), "fps": FPS,
               "audio_rate": AUDIO_RATE, "clips": clips, "files": files,
               "meld_missing_clip": "meld/train_splits/dia1_utt0.mp4" if "meld" in parts else None,
               "meld_zero_length": "dev dia0_utt1" if "meld" in parts else None,
               "properties": {prop: [c["path"] for c in clips if prop in c["properties"]]
                              for prop in sorted({p for c in clips for p in c["properties"]})}}
        write_json(tmp / "sample.json", idx)
    return idx


__all__ = ["make_sample", "make_clip", "ClipSpec", "FaceRig", "encode", "make_signals",
           "make_voice", "vtt_text", "rolling_vtt_text", "time_sentences", "GENERATOR_VERSION"]
