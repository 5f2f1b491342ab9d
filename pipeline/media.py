"""The media layer: find ffmpeg, probe files, stream decoded frames, read audio, cut clips.

Everything goes through one ffmpeg binary run as a subprocess with an argument list (never a shell
string). There is no ffprobe in the imageio-ffmpeg wheel, so `probe` reads the stream description
ffmpeg prints for `-i` and the video packet timestamps (`-c copy -f framecrc`, no decoding) to count
frames and detect variable frame rate.

Time convention: every time here (start, end, FrameBatch.t, read_audio's samples) is in seconds from
the start of the media file, i.e. the container's start offset (`MediaInfo.start_time`, the earliest
packet of any stream) is already subtracted — the same timeline ffmpeg's `-ss` uses and the one
caption files and segment tables are written in. decode and read_audio run ffmpeg with `-copyts` and
place every frame and sample by its own timestamp minus that offset, so a stream that starts late
(audio muxed 1.5 s after the video, a broadcast cut whose PTS start at 3600 s) lands where it plays,
and a seek that lands after the asked start (MPEG-TS has no index) is detected and redone earlier.
"""
from __future__ import annotations

import functools
import os
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass, field
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
    start_time: float = 0.0  # the container's start offset (s, its own PTS clock): media time 0
    video_start: float = 0.0  # the first video frame on the media timeline (s)
    # every audio stream, in order: {"index" (ffmpeg's stream number), "codec", "rate", "channels",
    # "language" ("" if untagged), "default" (disposition), "start" (first packet, media time s)}
    audio_streams: list = field(default_factory=list)
    audio_index: int = 0     # the chosen one's position among the audio streams (`-map 0:a:N`), see choose_audio_stream

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)(?:,\s*start:\s*(-?\d+(?:\.\d+)?))?")
_VIDEO_RE = re.compile(r"Stream #0:(\d+)[^:]*:\s*Video:\s*([A-Za-z0-9_]+)(.*)")
_AUDIO_RE = re.compile(r"Stream #0:(\d+)[^:]*:\s*Audio:\s*([A-Za-z0-9_]+)(.*)")
_LANG_RE = re.compile(r"Stream #0:\d+(?:\[[^\]]*\])?\(([A-Za-z]{2,3})\)")
_CHANNELS_RE = re.compile(r"Hz,\s*(mono|stereo|(\d+) channels|[\d.]+(?:\(\w+\))?)")
_SIZE_RE = re.compile(r",\s*(\d{1,5})x(\d{1,5})")
_RATE_RE = re.compile(r"(\d+)\s*Hz")
_ROT_RE = re.compile(r"rotation of\s*(-?\d+(?:\.\d+)?)\s*degrees")
_FPS_RE = re.compile(r"([\d.]+)\s*fps")
_TB_RE = re.compile(r"^#tb\s+(\d+):\s*(\d+)/(\d+)", re.M)

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
    # One ffmpeg run: the input description on stderr, packet timestamps (video first, then every audio
    # stream) on stdout. -copyts: the packets' own PTS, so stream starts can be told apart.
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-copyts", "-i", _arg(path), "-map", "0:v:0?",
                 "-map", "0:a?", "-c", "copy", "-f", "framecrc", "-"], path, timeout)
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
    audio = [_audio_stream(m) for m in _AUDIO_RE.finditer(head)]
    has_audio = bool(audio)
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

    # packet timestamps -> frame count, duration, VFR; each audio stream's first packet
    tbs = {int(m.group(1)): int(m.group(2)) / int(m.group(3)) for m in _TB_RE.finditer(out)}
    tb = tbs.get(0, 0.0)
    pts, durs = [], []
    first: dict[int, float] = {}
    for line in out.splitlines():
        if line[:1].isdigit():
            parts = line.split(",")
            try:
                k = int(parts[0])
                t = int(parts[2]) * tbs[k]
                d = int(parts[3]) * tbs[k]
            except (ValueError, IndexError, KeyError):
                continue
            first[k] = min(first.get(k, t), t)
            if k == 0:
                pts.append(t)
                durs.append(d)
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
            vfr = bool(np.max(np.abs(deltas - med)) > max(_CFG.vfr_tolerance * med, 1.5 * tb))
    fps = n / duration if duration > 0 else 0.0
    if fps == 0.0:
        fm = _FPS_RE.search(rest)
        fps = float(fm.group(1)) if fm else 0.0
    # media time 0: the container's start (ffmpeg's -ss counts from it), else the earliest packet
    dm = _DURATION_RE.search(head)
    t0 = float(dm.group(4)) if dm and dm.group(4) else min(first.values())
    for k, a in enumerate(audio):
        a["start"] = round(first.get(k + 1, t0) - t0, 6)
    info = MediaInfo(path=path, duration=duration, fps=fps, vfr=vfr, width=w, height=h, rotation=rotation,
                     has_video=True, has_audio=has_audio, audio_rate=0, n_frames=n, codec=codec,
                     start_time=t0, video_start=round(float(p[0]) - t0, 6), audio_streams=audio)
    if audio:
        info.audio_index = choose_audio_stream(info, _CFG.audio_langs)
        info.audio_rate = audio[info.audio_index]["rate"]
    return info


def _audio_stream(m: re.Match) -> dict:
    """One audio stream of ffmpeg's `-i` listing, e.g. 'Stream #0:2[0x102](eng): Audio: aac (LC), 48000 Hz,
    stereo, fltp, 128 kb/s (default)'."""
    line = m.group(0)
    rate = _RATE_RE.search(m.group(3))
    ch = _CHANNELS_RE.search(m.group(3))
    channels = 0
    if ch:
        word = ch.group(1)
        channels = {"mono": 1, "stereo": 2}.get(word) or int(ch.group(2) or 0) or \
            sum(int(x) for x in re.findall(r"\d+", word.split("(")[0]))   # "5.1" -> 6
    lang = _LANG_RE.search(line)
    return {"index": int(m.group(1)), "codec": m.group(2), "rate": int(rate.group(1)) if rate else 0,
            "channels": channels, "language": lang.group(1).lower() if lang and lang.group(1) != "und" else "",
            "default": "(default)" in m.group(3), "start": 0.0}


def choose_audio_stream(info: MediaInfo, langs) -> int:
    """The audio stream to read, as its position among the audio streams: the one marked `default`, else
    the first whose language tag is in `langs` (media.audio_langs), else the first. read_audio may still
    move to another stream when this one is silent for the span asked (see read_audio_stream)."""
    streams = info.audio_streams
    for k, a in enumerate(streams):
        if a["default"]:
            return k
    wanted = [x.lower() for x in langs]
    for k, a in enumerate(streams):
        if a["language"] and a["language"] in wanted:
            return k
    return 0


@dataclass
class FrameBatch:
    frames: np.ndarray   # (n, h, w, 3) uint8 RGB
    t: np.ndarray        # (n,) float64 seconds in the source timeline
    scale: float         # analysis pixels / original display pixels


def _span(path: Path, info: MediaInfo, start: float, end: float | None) -> tuple[float, float]:
    start = float(start or 0.0)
    vend = info.video_start + info.duration   # the video's end on the media timeline
    end = vend if end is None else float(end)
    if start < 0 or end <= start:
        raise MediaError(path, Reason.MEDIA_SPAN, f"span {start:.3f}-{end:.3f} s is empty or negative")
    if start >= vend or end > vend + _CFG.span_slack_s:
        raise MediaError(path, Reason.MEDIA_SPAN,
                         f"span {start:.3f}-{end:.3f} s lies outside the media (duration {info.duration:.3f} s)")
    return start, min(end, vend)


def _read_exact(stream, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        k = stream.readinto(buf[got:])
        if not k:
            break
        got += k
    return got


_PTS_RE = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.e+-]+)")
# Seek retries: a demuxer without an index (MPEG-TS) may land after the asked time, and the decoder
# then waits for the next keyframe (a whole GOP later). When the first decoded frame/sample is later
# than the span's start, the read is redone from this much earlier, then from the file's start.
_SEEK_BACK_S = (0.0, 3.0, 15.0, 60.0)
_LATE_TOL_S = 0.05   # first decoded data this much after the start (or the stream's own start) is late


def _seeks(start: float):
    """The input seek points to try for a read starting at `start` (the last one is the file start)."""
    out = []
    for back in _SEEK_BACK_S:
        s = max(0.0, start - back)
        if not out or s < out[-1]:
            out.append(s)
    if out[-1] > 0:
        out.append(0.0)
    return out


def _first_is_late(first: float | None, start: float, stream_start: float, seek: float) -> bool:
    """Did a read that seeked to `seek` start decoding after `start`, missing data the stream has?"""
    return seek > 0 and first is not None and first > max(start, stream_start) + _LATE_TOL_S


def decode(path: str | os.PathLike, start: float = 0.0, end: float | None = None, fps: float | None = 25.0,
           max_side: int | None = 640, batch: int = 64, info: MediaInfo | None = None) -> Iterator[FrameBatch]:
    """Stream RGB frames of [start, end) in batches of at most `batch` frames.

    One ffmpeg process pipes raw RGB; the generator holds only the batch it is filling (memory is
    bounded by `batch`, whatever the clip length, as long as the consumer drops old batches). `fps` resamples to a
    constant rate (t = start + k/fps, only where the video has a frame at or before t); `fps=None` keeps
    the native frames with their own timestamps (variable frame rate preserved). Every t is the frame's
    own PTS on the media timeline (module docstring). Frames are display-oriented (rotation applied) and
    downscaled so the longer side is at most `max_side`. Stopping the iteration early kills ffmpeg."""
    path = Path(path)
    info = info or probe(path)
    start, end = _span(path, info, start, end)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive or None, got {fps}")
    seeks = _seeks(start)
    for i, seek in enumerate(seeks):
        late: list = []
        yield from _decode_from(path, info, start, end, fps, max_side, batch, seek, i == len(seeks) - 1, late)
        if not late:
            return


def _decode_from(path, info, start, end, fps, max_side, batch, seek, last, late: list):
    """One decode of [start, end) with the input seeked to `seek`. Appends to `late` (and yields nothing)
    when the first decoded frame came after the start and this is not the `last` try: the caller then
    seeks earlier."""
    W, H = info.width, info.height
    s = 1.0 if not max_side or max(W, H) <= max_side else max_side / max(W, H)
    ow, oh = max(2, int(round(W * s))), max(2, int(round(H * s)))
    scale = ow / W
    # -copyts keeps the packets' PTS; `setpts` moves them so 0 is the span's start on the media timeline
    # (the container's start offset subtracted); the first showinfo sees each decoded frame before any
    # trimming (the seek check), the last one reports each output frame's time.
    t0 = info.start_time + start
    filters = ["showinfo@first=checksum=0", f"setpts=PTS-{t0:.6f}/TB"]
    if fps is not None:
        # the grid start + k/fps; a grid point shows the frame displayed then (frames before the start
        # are consumed, not shown); points before the video's first frame are dropped below
        filters.append(f"fps={fps!r}:start_time=0")
    else:
        filters.append("trim=start=0")
    filters.append(f"trim=end={end - start:.6f}")
    if (ow, oh) != (W, H):
        # area-downscale in the decoder's own YUV 4:2:0, then ffmpeg's fast unscaled YUV->RGB path: 40%
        # less decode CPU than area-scaling straight to RGB (720p -> 640x360: 2.9 -> 1.9 ms per frame),
        # pixels within 0.8 levels of that on average (docs/faces.md, "Landmarker at its limit")
        filters.append(f"scale={ow}:{oh}:flags=area,format=yuv420p")
    filters.append("showinfo=checksum=0")  # no plane checksums: they cost ~20% of decode
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-copyts"]
    if seek > 0:
        # input seek to the keyframe before `seek`, no ffmpeg-side trimming: the filters above cut exactly
        args += ["-noaccurate_seek", "-ss", f"{seek:.6f}"]
    if _CFG.decode_threads > 0:
        args += ["-threads", str(_CFG.decode_threads)]  # an input option: the decoder's threads
    args += ["-i", _arg(path), "-map", "0:v:0", "-an", "-sn", "-dn",
             "-vf", ",".join(filters), "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    frame_bytes = ow * oh * 3
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=frame_bytes)
    times: queue.Queue = queue.Queue()
    first: queue.Queue = queue.Queue()   # the first decoded frame's media time, or None if there is none
    err_tail: list[bytes] = []

    def pump_stderr():
        seen = False
        for line in proc.stderr:
            m = _PTS_RE.search(line)
            if m and line.startswith(b"[showinfo@first"):
                if not seen:
                    first.put(float(m.group(3)) - info.start_time)
                    seen = True
            elif m:
                times.put(float(m.group(3)))
            elif b"showinfo" not in line:
                err_tail.append(line)
                del err_tail[:-20]
        if not seen:
            first.put(None)
        times.put(None)

    th = threading.Thread(target=pump_stderr, daemon=True)
    th.start()
    finished = False
    try:
        k0 = first.get(timeout=60)
        if not last and _first_is_late(k0, start, info.video_start, seek):
            late.append(k0)
            return
        # with fps resampling, grid points before the first decoded frame would repeat it: not frames
        t_min = -np.inf if k0 is None or fps is None else k0 - 0.5 / fps
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
                if start + tv < t_min:
                    continue
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


def _rms_db(a: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(a, dtype=np.float64)) + 1e-20)) if len(a) else -200.0


def read_audio(path: str | os.PathLike, start: float = 0.0, end: float | None = None, rate: int = 16000,
               info: MediaInfo | None = None) -> np.ndarray:
    """Mono float32 samples of [start, end) at `rate` Hz: exactly round((end-start)*rate) samples, sample
    k at media time start + k/rate — the timeline of decode()'s FrameBatch.t — with zeros where the audio
    stream has no samples (before its first packet, after its end). Empty array when the file has no
    audio. The stream read is read_audio_stream's choice."""
    return read_audio_stream(path, start, end, rate, info)[0]


def read_audio_stream(path: str | os.PathLike, start: float = 0.0, end: float | None = None, rate: int = 16000,
                      info: MediaInfo | None = None) -> tuple[np.ndarray, int]:
    """(read_audio's samples, the audio stream read as its position among the audio streams; -1 without
    audio). The stream is MediaInfo.audio_index (choose_audio_stream); when the file has other audio
    streams and that one is silent over the span (below media.audio_silence_db), the first other stream
    that is not silent there is read instead."""
    path = Path(path)
    info = info or probe(path)
    start, end = _span(path, info, start, end)
    if not info.has_audio:
        return np.zeros(0, np.float32), -1
    k = info.audio_index
    a = _read_audio_stream(path, info, k, start, end, rate)
    if len(info.audio_streams) > 1 and _rms_db(a) < _CFG.audio_silence_db:
        for j in range(len(info.audio_streams)):
            if j != k:
                b = _read_audio_stream(path, info, j, start, end, rate)
                if _rms_db(b) >= _CFG.audio_silence_db:
                    return b, j
    return a, k


def _read_audio_stream(path: Path, info: MediaInfo, k: int, start: float, end: float, rate: int) -> np.ndarray:
    n = int(round((end - start) * rate))
    stream_start = info.audio_streams[k]["start"] if k < len(info.audio_streams) else 0.0
    seeks = _seeks(start)
    for i, seek in enumerate(seeks):
        # -copyts + asetpts: 0 is the span's start on the media timeline; aresample's first_pts=0 pads with
        # silence up to the stream's first sample (audio that starts late) and drops samples before 0;
        # async=1 keeps later samples on their timestamps too (gaps padded)
        af = (f"ashowinfo@first,asetpts=PTS-{info.start_time + start:.6f}/TB,"
              f"aresample={int(rate)}:async=1:first_pts=0,atrim=end={end - start:.6f}")
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-copyts"]
        if seek > 0:
            args += ["-ss", f"{seek:.6f}"]
        args += ["-i", _arg(path), "-map", f"0:a:{k}", "-vn", "-af", af, "-ac", "1", "-f", "f32le", "-"]
        proc = _run(args, path, None)
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise MediaError(path, Reason.MEDIA_UNREADABLE, f"ffmpeg failed reading audio ({_tail(err)})")
        m = _PTS_RE.search(next((ln for ln in err.splitlines() if ln.startswith("[ashowinfo@first")), "").encode())
        first = float(m.group(3)) - info.start_time if m else None
        if i < len(seeks) - 1 and _first_is_late(first, start, stream_start, seek):
            continue   # the seek landed late: samples the stream has would read as silence
        a = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
        if len(a) >= n:
            return a[:n].copy()
        return np.concatenate([a, np.zeros(n - len(a), np.float32)])
    raise AssertionError("unreachable: the last seek is always used")


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


__all__ = ["MediaError", "MediaInfo", "FrameBatch", "ffmpeg_exe", "probe", "choose_audio_stream", "decode",
           "read_audio", "read_audio_stream", "cut_clip"]
