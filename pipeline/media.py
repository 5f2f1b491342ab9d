"""The media layer: find ffmpeg, probe files, stream decoded frames, read audio, cut clips.

Everything goes through one ffmpeg binary run as a subprocess with an argument list (never a shell
string). There is no ffprobe in the imageio-ffmpeg wheel, so `probe` reads the stream description
ffmpeg prints for `-i` and the video packet timestamps (`-c copy -f framecrc`, no decoding) to count
frames and detect variable frame rate.

Time convention: every time here (start, end, FrameBatch.t) is in seconds from the start of the
media file, i.e. the container's start offset is already subtracted — the same timeline ffmpeg's
`-ss` uses and the one caption files and segment tables are written in.
"""
from __future__ import annotations

import functools
import os
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.records import ItemError, Reason

from pipeline.config.media import MediaConfig

# Settings (thresholds and the ffmpeg path) come from the `media` config section; `configure()`
# installs a run's section, the defaults apply otherwise.
_CFG = MediaConfig()


def configure(cfg: MediaConfig) -> None:
    """Use this run's `media` config section (ffmpeg path, tolerances, timeouts)."""
    global _CFG
    _CFG = cfg


class MediaError(ItemError):
    """A media file that cannot be used; `.path` names it, `.reason` is a pipeline.records.Reason."""

    def __init__(self, path: str | os.PathLike, reason: Reason, detail: str):
        self.path = Path(path)
        super().__init__(reason, detail)
        self.args = (f"{self.path}: {detail}",)


def ffmpeg_exe(configured: str | None = None) -> str:
    """The one way to find ffmpeg (decoding, yt-dlp's merges, rendering, test media): `configured`, else
    the config's `media.ffmpeg` (see configure()), else $WORDSMILE_FFMPEG, else `ffmpeg` on PATH, else the
    binary in the imageio-ffmpeg wheel (no ffprobe in it: probing uses ffmpeg itself)."""
    if configured is None:
        configured = _CFG.ffmpeg or os.environ.get("WORDSMILE_FFMPEG", "")
    return _resolve_ffmpeg(configured)


@functools.lru_cache(maxsize=8)
def _resolve_ffmpeg(configured: str) -> str:
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if not found:
            raise FileNotFoundError(f"configured ffmpeg {configured!r} does not exist (media.ffmpeg)")
        return str(found)
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class MediaInfo:
    path: Path
    duration: float          # seconds: the video stream's span when there is one, else the container's
    fps: float               # average: frames / video duration
    vfr: bool                # frame durations really vary (not just time-base rounding)
    width: int               # display size (after rotation), pixels
    height: int
    rotation: int            # display-matrix rotation, degrees counter-clockwise, one of 0/90/180/270
    has_video: bool
    has_audio: bool
    audio_rate: int          # Hz, 0 without audio
    n_frames: int
    codec: str               # video codec name (h264, hevc, ...)

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)(?:,\s*start:\s*(-?\d+(?:\.\d+)?))?")
_VIDEO_RE = re.compile(r"Stream #0:(\d+)[^:]*:\s*Video:\s*([A-Za-z0-9_]+)(.*)")
_AUDIO_RE = re.compile(r"Stream #0:(\d+)[^:]*:\s*Audio:\s*([A-Za-z0-9_]+)(.*)")
_SIZE_RE = re.compile(r",\s*(\d{1,5})x(\d{1,5})")
_RATE_RE = re.compile(r"(\d+)\s*Hz")
_ROT_RE = re.compile(r"rotation of\s*(-?\d+(?:\.\d+)?)\s*degrees")
_FPS_RE = re.compile(r"([\d.]+)\s*fps")
_TB_RE = re.compile(r"^#tb\s+0:\s*(\d+)/(\d+)", re.M)

# stderr phrases that mean the file itself is damaged (as opposed to our output failing)
_DAMAGE = ("moov atom not found", "Invalid data found when processing input", "partial file",
           "error reading header", "Truncating packet", "could not find codec parameters",
           "Failed to read frame size", "corrupt")


def _run(args: list[str], path: Path, timeout: float | None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MediaError(path, Reason.MEDIA_UNREADABLE, f"ffmpeg did not finish within {timeout:.0f} s") from None


_BRACKET_RE = re.compile(r"^\[[^\]]*\]\s*")


def _tail(err: str, n: int = 2) -> str:
    """The last distinct error lines of ffmpeg's stderr, without '[in#0 @ 0x...]' prefixes."""
    out: list[str] = []
    for ln in err.splitlines():
        if not ln.strip() or ln.startswith(" ") or ln.startswith("frame="):
            continue
        ln = _BRACKET_RE.sub("", ln.strip())
        ln = re.sub(r"^Error opening input( file [^:]*)?[.:]?\s*", "", ln).strip()
        if ln and ln not in out:
            out.append(ln)
    return "; ".join(out[-n:]) or "no error message"


def _arg(path: Path) -> str:
    """A path as an ffmpeg argument: absolute with the file: protocol, so names starting with '-' or
    containing ':' (e.g. 'http:x.mp4', 'concat:...') are never read as options or protocols."""
    return "file:" + str(Path(path).absolute())


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, Reason.MEDIA_UNREADABLE, "file does not exist")
    if not path.is_file():
        raise MediaError(path, Reason.MEDIA_UNREADABLE, "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(path, Reason.MEDIA_UNREADABLE, "file is empty (0 bytes)")


def probe(path: str | os.PathLike, timeout: float | None = None) -> MediaInfo:
    """Describe a media file without decoding it. MediaError (naming the file) for missing, empty,
    corrupt, truncated, audio-only and non-media files."""
    path = Path(path)
    _check_file(path)
    timeout = _CFG.probe_timeout_s if timeout is None else timeout
    # One ffmpeg run: the input description on stderr, video packet timestamps on stdout.
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _arg(path), "-map", "0:v:0?", "-c", "copy",
                 "-f", "framecrc", "-"], path, timeout)
    err = proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8", "replace")
    head = err.split("Stream mapping:")[0]
    if "Input #0" not in head:
        raise MediaError(path, Reason.MEDIA_UNREADABLE, f"not a readable media file ({_tail(err)})")
    if re.search(r"Input #0, (image2|[a-z0-9]+_pipe)\b", head):
        raise MediaError(path, Reason.MEDIA_NO_VIDEO, "is a still image, not a video")
    vm = _VIDEO_RE.search(head)
    # cover art in audio files is a "video" stream holding one picture: not video
    if vm and "attached pic" in head[vm.start():].split("\n", 1)[0]:
        vm = None
    am = _AUDIO_RE.search(head)
    has_audio = am is not None
    audio_rate = int(_RATE_RE.search(am.group(3)).group(1)) if am and _RATE_RE.search(am.group(3)) else 0
    if vm is None:
        if has_audio:
            raise MediaError(path, Reason.MEDIA_NO_VIDEO, "has audio but no video stream")
        raise MediaError(path, Reason.MEDIA_UNREADABLE, f"no video stream ({_tail(err)})")
    # only ffmpeg's own log lines ("[demuxer @ 0x..] ..."), not metadata such as a title "Corruption"
    log = "\n".join(ln for ln in err.splitlines() if ln.startswith("["))
    damaged = [p for p in _DAMAGE if p in log]
    if proc.returncode != 0 or damaged:
        why = damaged[0] if damaged else _tail(err)
        raise MediaError(path, Reason.MEDIA_UNREADABLE, f"corrupt or truncated media ({why})")

    codec = vm.group(2)
    rest = vm.group(3)
    sm = _SIZE_RE.search(rest)
    if not sm:
        raise MediaError(path, Reason.MEDIA_UNREADABLE, "video stream has no frame size")
    w, h = int(sm.group(1)), int(sm.group(2))
    stream_block = head[vm.start():]
    nxt = stream_block.find("Stream #", 1)
    if nxt > 0:
        stream_block = stream_block[:nxt]
    rm = _ROT_RE.search(stream_block)
    rotation = int(round(float(rm.group(1)))) % 360 if rm else 0
    rotation = int(round(rotation / 90.0)) * 90 % 360
    if rotation in (90, 270):
        w, h = h, w

    # packet timestamps -> frame count, duration, VFR
    tbm = _TB_RE.search(out)
    pts, durs = [], []
    if tbm:
        tb = int(tbm.group(1)) / int(tbm.group(2))
        for line in out.splitlines():
            if line.startswith("0,"):
                parts = line.split(",")
                try:
                    pts.append(int(parts[2]) * tb)
                    durs.append(int(parts[3]) * tb)
                except (ValueError, IndexError):
                    continue
    if not pts:
        raise MediaError(path, Reason.MEDIA_UNREADABLE, "video stream holds no frames")
    p = np.sort(np.asarray(pts, dtype=np.float64))
    n = len(p)
    last_dur = durs[int(np.argmax(pts))] if durs else 0.0
    deltas = np.diff(p)
    if last_dur <= 0:
        last_dur = float(np.median(deltas)) if n > 1 else 0.0
    duration = float(p[-1] - p[0] + last_dur)
    if duration <= 0:
        dm = _DURATION_RE.search(head)
        duration = (int(dm.group(1)) * 3600 + int(dm.group(2)) * 60 + float(dm.group(3))) if dm else 0.0
    vfr = False
    if n > 2:
        med = float(np.median(deltas))
        if med > 0:
            vfr = bool(np.max(np.abs(deltas - med)) > max(_CFG.vfr_tolerance * med, 1.5 * tb if tbm else 0))
    fps = n / duration if duration > 0 else 0.0
    if fps == 0.0:
        fm = _FPS_RE.search(rest)
        fps = float(fm.group(1)) if fm else 0.0
    return MediaInfo(path=path, duration=duration, fps=fps, vfr=vfr, width=w, height=h, rotation=rotation,
                     has_video=True, has_audio=has_audio, audio_rate=audio_rate, n_frames=n, codec=codec)


@dataclass
class FrameBatch:
    frames: np.ndarray   # (n, h, w, 3) uint8 RGB
    t: np.ndarray        # (n,) float64 seconds in the source timeline
    scale: float         # analysis pixels / original display pixels


def _span(path: Path, info: MediaInfo, start: float, end: float | None) -> tuple[float, float]:
    start = float(start or 0.0)
    end = info.duration if end is None else float(end)
    if start < 0 or end <= start:
        raise MediaError(path, Reason.MEDIA_SPAN, f"span {start:.3f}-{end:.3f} s is empty or negative")
    if start >= info.duration or end > info.duration + _CFG.span_slack_s:
        raise MediaError(path, Reason.MEDIA_SPAN,
                         f"span {start:.3f}-{end:.3f} s lies outside the media (duration {info.duration:.3f} s)")
    return start, min(end, info.duration)


def _read_exact(stream, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        k = stream.readinto(buf[got:])
        if not k:
            break
        got += k
    return got


_PTS_RE = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.e+-]+)")


def decode(path: str | os.PathLike, start: float = 0.0, end: float | None = None, fps: float | None = 25.0,
           max_side: int | None = 640, batch: int = 64, info: MediaInfo | None = None) -> Iterator[FrameBatch]:
    """Stream RGB frames of [start, end) in batches of at most `batch` frames.

    One ffmpeg process pipes raw RGB; the generator holds only the batch it is filling (memory is
    bounded by `batch`, whatever the clip length, as long as the consumer drops old batches). `fps` resamples to a
    constant rate (t = start + k/fps); `fps=None` keeps the native frames with their own timestamps
    (variable frame rate preserved). Frames are display-oriented (rotation applied) and downscaled so
    the longer side is at most `max_side`. Stopping the iteration early kills ffmpeg."""
    path = Path(path)
    info = info or probe(path)
    start, end = _span(path, info, start, end)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None, got {fps}")
    W, H = info.width, info.height
    s = 1.0 if not max_side or max(W, H) <= max_side else max_side / max(W, H)
    ow, oh = max(2, int(round(W * s))), max(2, int(round(H * s)))
    scale = ow / W
    filters = []
    if fps is not None:
        filters.append(f"fps={fps!r}")
    if (ow, oh) != (W, H):
        # area-downscale in the decoder's own YUV 4:2:0, then ffmpeg's fast unscaled YUV->RGB path: 40%
        # less decode CPU than area-scaling straight to RGB (720p -> 640x360: 2.9 -> 1.9 ms per frame),
        # pixels within 0.8 levels of that on average (docs/faces.md, "Landmarker at its limit")
        filters.append(f"scale={ow}:{oh}:flags=area,format=yuv420p")
    filters.append("showinfo=checksum=0")  # each output frame's true pts on stderr (no plane checksums: they cost ~20% of decode)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]  # input seek; ffmpeg then decodes up to the exact start
    if _CFG.decode_threads > 0:
        args += ["-threads", str(_CFG.decode_threads)]  # an input option: the decoder's threads
    args += ["-i", _arg(path), "-t", f"{end - start:.6f}", "-map", "0:v:0", "-an", "-sn", "-dn",
             "-vf", ",".join(filters), "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    frame_bytes = ow * oh * 3
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=frame_bytes)
    times: queue.Queue = queue.Queue()
    err_tail: list[bytes] = []

    def pump_stderr():
        for line in proc.stderr:
            m = _PTS_RE.search(line)
            if m:
                times.put(float(m.group(3)))
            elif b"showinfo" not in line:
                err_tail.append(line)
                del err_tail[:-20]
        times.put(None)

    th = threading.Thread(target=pump_stderr, daemon=True)
    th.start()
    finished = False
    try:
        batch = max(1, int(batch))
        while True:
            arr = np.empty((batch, oh, ow, 3), np.uint8)
            flat = memoryview(arr.reshape(-1))
            ts = np.empty(batch, np.float64)
            n = 0
            while n < batch:
                got = _read_exact(proc.stdout, flat[n * frame_bytes:(n + 1) * frame_bytes])
                if got < frame_bytes:
                    break
                tv = times.get(timeout=60)
                if tv is None:  # stderr closed before this frame's line: should not happen
                    raise MediaError(path, Reason.MEDIA_UNREADABLE, "frame without a timestamp from ffmpeg")
                ts[n] = start + tv
                n += 1
            if n:
                yield FrameBatch(frames=arr[:n] if n < batch else arr, t=ts[:n].copy(), scale=scale)
            if n < batch:
                break
        rc = proc.wait()
        th.join(timeout=10)
        finished = True
        if rc != 0:
            msg = b" | ".join(x.strip() for x in err_tail[-3:]).decode("utf-8", "replace")
            raise MediaError(path, Reason.MEDIA_UNREADABLE, f"ffmpeg failed while decoding ({msg})")
    finally:
        if not finished:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        th.join(timeout=5)


def read_audio(path: str | os.PathLike, start: float = 0.0, end: float | None = None, rate: int = 16000,
               info: MediaInfo | None = None) -> np.ndarray:
    """Mono float32 samples of [start, end) at `rate` Hz; exactly round((end-start)*rate) samples
    (zero-padded if the audio track ends early). Empty array when the file has no audio."""
    path = Path(path)
    info = info or probe(path)
    start, end = _span(path, info, start, end)
    if not info.has_audio:
        return np.zeros(0, np.float32)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", _arg(path), "-t", f"{end - start:.6f}", "-map", "0:a:0", "-vn", "-ac", "1",
             "-ar", str(int(rate)), "-f", "f32le", "-"]
    proc = _run(args, path, None)
    if proc.returncode != 0:
        raise MediaError(path, Reason.MEDIA_UNREADABLE,
                         f"ffmpeg failed reading audio ({_tail(proc.stderr.decode('utf-8', 'replace'))})")
    a = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    n = int(round((end - start) * rate))
    if len(a) >= n:
        return a[:n].copy()
    return np.concatenate([a, np.zeros(n - len(a), np.float32)])


def cut_clip(path: str | os.PathLike, start: float, end: float, dest: str | os.PathLike,
             reencode: bool = True, info: MediaInfo | None = None) -> Path:
    """Write [start, end) of `path` to `dest` atomically. `reencode=True` cuts frame-exactly
    (H.264 + AAC); `reencode=False` copies the streams (fast, but starts on a keyframe)."""
    path, dest = Path(path), Path(dest)
    info = info or probe(path)
    start, end = _span(path, info, start, end)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", _arg(path), "-t", f"{end - start:.6f}", "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn",
             "-map_metadata", "-1"]
    if reencode:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-b:a", "128k"]
    else:
        args += ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    if dest.suffix.lower() in (".mp4", ".mov", ".m4v"):
        args += ["-movflags", "+faststart"]
    with atomic_path(dest) as tmp:
        proc = _run(args + [_arg(tmp)], path, None)
        if proc.returncode != 0:
            raise MediaError(path, Reason.MEDIA_UNREADABLE,
                             f"ffmpeg failed cutting {start:.3f}-{end:.3f} s to {dest} "
                             f"({_tail(proc.stderr.decode('utf-8', 'replace'))})")
    return dest


__all__ = ["MediaError", "MediaInfo", "FrameBatch", "ffmpeg_exe", "probe", "decode", "read_audio", "cut_clip"]
