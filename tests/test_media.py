"""pipeline/media.py against real files: the generated sample (whose true frame times are known) and
small clips made here with ffmpeg."""
from __future__ import annotations

import json
import os
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline import media
from pipeline.media import MediaError, cut_clip, decode, ffmpeg_exe, probe, read_audio
from pipeline.records import Reason


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _truth(clip: Path) -> np.ndarray:
    return np.array(json.loads(clip.with_suffix(".signals.json").read_text())["t"])


def _all(it) -> tuple[np.ndarray, np.ndarray]:
    batches = list(it)
    return np.concatenate([b.frames for b in batches]), np.concatenate([b.t for b in batches])


def _children() -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            kids |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return kids


def test_ffmpeg_exe_found_and_cached():
    exe = ffmpeg_exe()
    assert Path(exe).exists()
    assert ffmpeg_exe() is exe
    with pytest.raises(FileNotFoundError, match="no-such-ffmpeg"):
        ffmpeg_exe("/nonexistent/no-such-ffmpeg")


def test_probe_constant_rate(sample_dir):
    info = probe(sample_dir / "folder" / "talk_01.mp4")
    assert (info.width, info.height, info.rotation, info.codec) == (640, 360, 0, "h264")
    assert info.n_frames == 125 and not info.vfr
    assert info.fps == pytest.approx(25.0, abs=1e-6)
    assert info.duration == pytest.approx(5.0, abs=0.04)
    assert info.has_video and info.has_audio and info.audio_rate == 16000
    wide = probe(sample_dir / "folder" / "talk_03.mp4")
    assert (wide.width, wide.height) == (1280, 720)


def test_probe_variable_rate(sample_dir):
    clip = sample_dir / "folder" / "vfr.mp4"
    info = probe(clip)
    assert info.vfr
    assert info.n_frames == len(_truth(clip)) == 100
    assert info.duration == pytest.approx(5.0, abs=0.04)
    assert info.fps == pytest.approx(20.0, abs=0.2)   # average: 100 frames over 5 s


@pytest.mark.parametrize("name", ["talk_01.mp4", "vfr.mp4"])
def test_decode_native_frames_have_true_timestamps(sample_dir, name):
    clip = sample_dir / "folder" / name
    truth = _truth(clip)
    frames, t = _all(decode(clip, fps=None, max_side=320, batch=16))
    assert len(t) == len(truth)
    assert np.abs(t - truth).max() < 0.005          # far inside one frame (>= 33 ms here)
    assert frames.shape == (len(truth), 180, 320, 3) and frames.dtype == np.uint8


def test_decode_resamples_vfr_to_constant_rate(sample_dir):
    clip = sample_dir / "folder" / "vfr.mp4"
    truth = _truth(clip)
    frames, t = _all(decode(clip, fps=25.0, max_side=160))
    assert abs(len(t) - 125) <= 1
    np.testing.assert_allclose(t, np.arange(len(t)) / 25.0, atol=1e-3)
    # in the 10 fps stretch (2-4 s) each source frame is repeated: the picture at t shows the source
    # frame displayed at t, i.e. the latest source frame not after t (within one output frame)
    native, tn = _all(decode(clip, fps=None, max_side=160))
    for k in (55, 63, 77, 96, 110):
        src = np.searchsorted(tn, t[k] + 1e-6) - 1
        diffs = [np.abs(frames[k].astype(int) - native[j].astype(int)).mean() for j in range(len(tn))]
        assert abs(int(np.argmin(diffs)) - src) <= 1, (k, t[k], tn[src])


def test_decode_span_is_frame_accurate(sample_dir):
    clip = sample_dir / "folder" / "talk_01.mp4"
    full, tf = _all(decode(clip, fps=None, max_side=320))
    part, tp = _all(decode(clip, start=1.0, end=2.0, fps=None, max_side=320))
    assert len(tp) == 25
    np.testing.assert_allclose(tp, tf[25:50], atol=1e-3)
    # the same pictures as the full decode (exact seek, no keyframe snapping)
    assert np.abs(part.astype(int) - full[25:50].astype(int)).mean() < 1.0
    _, tr = _all(decode(clip, start=1.0, end=2.0, fps=10.0, max_side=320))
    np.testing.assert_allclose(tr, 1.0 + np.arange(10) / 10.0, atol=1e-3)


def test_decode_downscales_and_reports_scale(sample_dir):
    clip = sample_dir / "folder" / "talk_03.mp4"   # 1280x720
    b = next(iter(decode(clip, end=0.5, max_side=640, batch=4)))
    assert b.frames.shape == (4, 360, 640, 3)
    assert b.scale == pytest.approx(0.5)


def test_decode_stops_ffmpeg_when_consumer_stops(sample_dir):
    before = _children()
    gen = decode(sample_dir / "folder" / "talk_01.mp4", fps=None, batch=2)
    next(gen)
    assert _children() - before          # ffmpeg is running
    gen.close()
    assert not (_children() - before)    # and gone (killed and reaped) once the consumer stops


def test_decode_memory_is_bounded(tmp_path):
    # a 2-minute clip: 3000 frames of 256x144 RGB = 330 MB decoded; only one batch may be in memory
    clip = tmp_path / "long.mp4"
    _ff("-f", "lavfi", "-i", "testsrc2=size=256x144:rate=25:duration=120", "-c:v", "libx264",
        "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", str(clip))
    info = probe(clip)
    assert info.n_frames == 3000
    tracemalloc.start()
    try:
        n = 0
        for b in decode(clip, fps=None, max_side=None, batch=32, info=info):
            n += len(b.t)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoded = 3000 * 256 * 144 * 3
    assert n == 3000
    assert peak < 12e6 < decoded / 25, f"peak {peak / 1e6:.1f} MB while decoding {decoded / 1e6:.0f} MB"


def test_probe_and_decode_rotated_clip(sample_dir, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    _ff("-display_rotation", "90", "-i", str(sample_dir / "folder" / "talk_01.mp4"), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert info.rotation == 90
    assert (info.width, info.height) == (360, 640)
    b = next(iter(decode(rotated, end=0.2, max_side=None)))
    assert b.frames.shape[1:] == (640, 360, 3)
    plain = next(iter(decode(sample_dir / "folder" / "talk_01.mp4", end=0.2, max_side=None)))
    # the picture is the original turned by 90 degrees (counter-clockwise, as the display matrix says)
    turned = np.rot90(plain.frames[0], k=1)
    other = np.rot90(plain.frames[0], k=-1)
    d_ok = np.abs(b.frames[0].astype(int) - turned).mean()
    assert d_ok < 3 and d_ok < np.abs(b.frames[0].astype(int) - other).mean()


def _bad_files(sample_dir: Path, d: Path) -> dict[str, tuple[Path, Reason]]:
    good = (sample_dir / "folder" / "talk_01.mp4").read_bytes()
    out = {}
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = (d / "empty.mp4", Reason.MEDIA_UNREADABLE)
    (d / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    out["text"] = (d / "notes.mp4", Reason.MEDIA_UNREADABLE)
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])
    out["truncated"] = (d / "truncated.mp4", Reason.MEDIA_UNREADABLE)
    bad = bytearray(good)
    bad[:4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (d / "corrupt.mp4").write_bytes(bytes(bad))
    out["corrupt"] = (d / "corrupt.mp4", Reason.MEDIA_UNREADABLE)
    _ff("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(d / "voice.m4a"))
    out["audio_only"] = (d / "voice.m4a", Reason.MEDIA_NO_VIDEO)
    out["missing"] = (d / "missing.mp4", Reason.MEDIA_UNREADABLE)
    import cv2

    cv2.imwrite(str(d / "still.png"), np.zeros((32, 32, 3), np.uint8))
    out["still_image"] = (d / "still.png", Reason.MEDIA_NO_VIDEO)
    return out


def test_bad_files_raise_media_error_naming_the_file(sample_dir, tmp_path):
    for kind, (path, reason) in _bad_files(sample_dir, tmp_path).items():
        for call in (probe, lambda p: list(decode(p)), read_audio):
            with pytest.raises(MediaError) as ei:
                call(path)
            assert ei.value.reason is reason, (kind, ei.value)
            assert ei.value.path == path and path.name in str(ei.value), kind


def test_spans_outside_the_media(sample_dir):
    clip = sample_dir / "folder" / "talk_01.mp4"
    for start, end in ((6.0, 7.0), (2.0, 9.0), (3.0, 3.0), (-1.0, 1.0)):
        with pytest.raises(MediaError) as ei:
            list(decode(clip, start, end))
        assert ei.value.reason is Reason.MEDIA_SPAN and "talk_01.mp4" in str(ei.value)
    # caption rounding just past the end is clamped, not an error
    _, t = _all(decode(clip, 4.8, 5.2, fps=None))
    assert len(t) == 5


def test_read_audio_length_rate_and_content(sample_dir, tmp_path):
    clip = sample_dir / "folder" / "talk_01.mp4"
    a = read_audio(clip)
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) == 5 * 16000
    part = read_audio(clip, 1.0, 2.5, rate=8000)
    assert len(part) == 12000
    np.testing.assert_allclose(np.abs(part).mean(), np.abs(a[16000:40000]).mean(), rtol=0.1)
    assert 0.01 < np.abs(a).max() <= 1.0
    silent = tmp_path / "silent.mp4"
    _ff("-i", str(clip), "-an", "-c", "copy", str(silent))
    assert not probe(silent).has_audio
    assert read_audio(silent).shape == (0,)


def test_cut_clip(sample_dir, tmp_path):
    clip = sample_dir / "folder" / "talk_01.mp4"
    dest = cut_clip(clip, 1.0, 2.2, tmp_path / "out" / "cut.mp4")
    info = probe(dest)
    assert info.n_frames == 30 and info.duration == pytest.approx(1.2, abs=0.041) and info.has_audio
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cut.mp4"]      # no temp files left
    a, _ = _all(decode(dest, fps=None, max_side=320))
    b, _ = _all(decode(clip, 1.0, 2.2, fps=None, max_side=320))
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3                   # the same pictures
    fast = cut_clip(clip, 0.0, 2.0, tmp_path / "copy.mp4", reencode=False)
    assert probe(fast).duration == pytest.approx(2.0, abs=0.1)
    with pytest.raises(MediaError) as ei:
        cut_clip(clip, 4.0, 8.0, tmp_path / "bad.mp4")
    assert ei.value.reason is Reason.MEDIA_SPAN and not (tmp_path / "bad.mp4").exists()


def test_odd_file_names_are_not_options_or_protocols(sample_dir, tmp_path):
    odd = tmp_path / "-i concat:x.mp4"
    odd.write_bytes((sample_dir / "folder" / "talk_01.mp4").read_bytes())
    assert probe(odd).n_frames == 125
    out = cut_clip(odd, 0.0, 1.0, tmp_path / "http:out.mp4")
    assert probe(out).n_frames == 25 and len(read_audio(out)) == 16000


def test_config_thresholds_apply():
    from pipeline.config import load_config

    cfg = load_config(None, ["media.span_slack_s=0.0"])
    media.configure(cfg.media)
    try:
        assert media._CFG.span_slack_s == 0.0
    finally:
        media.configure(load_config(None).media)


def test_build_applies_the_media_config(sample_dir, tmp_path):
    """`media.*` settings reach the decoder in the build's worker code (here: a missing ffmpeg)."""
    from wordsmile.build import Build, local_mapper

    m = tmp_path / "m.yaml"
    m.write_text(f"name: t\nsources:\n  - {{id: t, kind: table, path: {sample_dir / 'table' / 'table.csv'}, align: 'off'}}\n")
    from pipeline import media

    try:
        res = Build(m, tmp_path / "ws", overrides=["media.ffmpeg=/nonexistent/ffmpeg"]).run(
            ["ingest"], local_mapper(1))
    finally:
        media.configure(media.MediaConfig())  # later tests in this process use the defaults again
    bad = [r for r in res.records if not r.ok]
    assert bad and all("/nonexistent/ffmpeg" in r.detail for r in bad), [r.detail for r in res.records]


# --- media timelines (issue 24): every frame and sample at its own time on the media timeline --------

def _ts_copy(src: Path, dest: Path, *opts: str) -> Path:
    """An MPEG-TS copy of `src` (the same coded frames) as a broadcast cut has it: PTS that start late.
    MP2 audio (broadcast's codec): AAC's 1024-sample priming would put the container's start 64 ms
    before the first frame, which is the TS's true timeline but not the MP4's (whose edit list hides it)."""
    _ff("-i", str(src), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-c:a", "mp2", *opts, str(dest))
    return dest


def _same_pictures(frames: np.ndarray, t: np.ndarray, ref: np.ndarray, ref_t: np.ndarray) -> bool:
    """Each frame is one of the reference's frames displayed within one frame period (40 ms) of its t."""
    for f, tt in zip(frames.astype(int), t):
        near = np.flatnonzero(np.abs(ref_t - tt) < 0.04 + 1e-6)
        if not len(near) or min(np.abs(f - ref[j]).mean() for j in near) >= 1.0:
            return False
    return True


@pytest.mark.parametrize("opts", [("-output_ts_offset", "3600"), ("-muxdelay", "1.4"), ()],
                         ids=["offset3600", "muxdelay1.4", "plain"])
def test_ts_cut_gives_the_frames_of_its_mp4(sample_dir, tmp_path, opts):
    """Before: -ss on a TS landed a GOP late and `-t` counted from there: 0 frames for 1.0-2.0 s."""
    clip = sample_dir / "folder" / "talk_01.mp4"
    ts = _ts_copy(clip, tmp_path / "cut.ts", *opts)
    info = probe(ts)
    ref, ref_t = _all(decode(clip, fps=None, max_side=160))
    for fps in (None, 25.0):
        for start, end in ((0.0, None), (1.0, 2.0), (2.2, 3.4), (0.3, 1.1), (4.1, 4.9)):
            _, ta = _all(decode(clip, start, end, fps=fps, max_side=160))
            b, tb = _all(decode(ts, start, end, fps=fps, max_side=160, info=info))
            assert abs(len(tb) - len(ta)) <= 1, (fps, start, end, len(ta), len(tb))
            assert start <= tb[0] < start + 0.04 + 1e-6 and tb[-1] < (end or 5.04), (fps, start, end, tb[0])
            assert _same_pictures(b, tb, ref, ref_t), (fps, start, end)
    assert info.start_time > 1.0 and abs(info.video_start) < 0.04 and info.n_frames == 125


def test_mkv_copy_gives_the_frames_of_its_mp4(sample_dir, tmp_path):
    clip = sample_dir / "folder" / "talk_01.mp4"
    mkv = tmp_path / "x.mkv"
    _ff("-i", str(clip), "-c", "copy", str(mkv))
    for fps in (None, 25.0):
        a, ta = _all(decode(clip, 1.3, 2.9, fps=fps, max_side=160))
        b, tb = _all(decode(mkv, 1.3, 2.9, fps=fps, max_side=160))
        assert len(ta) == len(tb) and np.abs(tb - ta).max() < 1e-3
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


def _late_beep(tmp_path: Path, ext: str) -> Path:
    """5 s of video; the audio track starts 1.5 s late and beeps 0.5 s into itself: at 2.0 s."""
    wav = tmp_path / "beep.wav"
    if not wav.exists():
        _ff("-f", "lavfi", "-i", "aevalsrc='if(between(t,0.5,0.6),0.5*sin(2*PI*1000*t),0)':s=16000:d=3.5",
            "-c:a", "pcm_s16le", str(wav))
    out = tmp_path / f"late.{ext}"
    _ff("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=5", "-itsoffset", "1.5", "-i", str(wav),
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", str(out))
    return out


@pytest.mark.parametrize("ext", ["mp4", "mkv", "ts"])
def test_read_audio_places_late_audio_on_the_video_timeline(tmp_path, ext):
    """Before: samples came from the first audio packet on, so the 2.0 s beep read at ~0.5 s."""
    clip = _late_beep(tmp_path, ext)
    info = probe(clip)
    for start in (0.0, 1.0, 1.7):
        a = read_audio(clip, start, 4.0, info=info)
        assert len(a) == round((4.0 - start) * 16000)
        loud = np.flatnonzero(np.abs(a) > 0.1)
        assert start + loud[0] / 16000 == pytest.approx(2.0, abs=0.02), (ext, start)
        # zeros before the audio's first sample, not someone else's samples
        lead = int(round((1.4 - start) * 16000))
        if lead > 0:
            assert np.abs(a[:lead]).max() < 1e-3
    assert info.audio_streams[0]["start"] == pytest.approx(1.5, abs=0.1)


def _two_tracks(sample_dir: Path, dest: Path, *opts: str) -> Path:
    """talk_01 with a silent first audio track (German commentary) before its English speech track."""
    _ff("-i", str(sample_dir / "folder" / "talk_01.mp4"), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
        "-map", "0:v", "-map", "1:a", "-map", "0:a", "-c:v", "copy", "-c:a", "aac", "-shortest",
        "-metadata:s:a:0", "language=deu", "-metadata:s:a:1", "language=eng", *opts, str(dest))
    return dest


def test_two_audio_streams_are_listed_and_the_speech_one_read(sample_dir, tmp_path):
    """Before: `-map 0:a:0` read the silent first track: no usable audio for the speaker check."""
    speech = read_audio(sample_dir / "folder" / "talk_01.mp4")
    # the silent track marked default: the default wins, then its silence moves the read
    both = _two_tracks(sample_dir, tmp_path / "two.mp4", "-disposition:a:0", "default", "-disposition:a:1", "0")
    info = probe(both)
    langs = [(s["language"], s["default"], s["rate"], s["channels"]) for s in info.audio_streams]
    assert langs == [("deu", True, 16000, 1), ("eng", False, 16000, 1)]
    assert info.audio_index == 0 and json.loads(json.dumps(info.to_json()))["audio_streams"][1]["language"] == "eng"
    a, k = media.read_audio_stream(both, info=info)
    m = min(len(a), len(speech))
    assert k == 1 and np.corrcoef(a[:m], speech[:m])[0, 1] > 0.95
    # no default disposition: the preferred language decides
    plain = _two_tracks(sample_dir, tmp_path / "nodefault.mkv", "-disposition:a:0", "0", "-disposition:a:1", "0")
    info = probe(plain)
    assert [s["default"] for s in info.audio_streams] == [False, False] and info.audio_index == 1
    assert media.choose_audio_stream(info, ["deu"]) == 0 and media.choose_audio_stream(info, ["fra"]) == 0
    assert np.corrcoef(read_audio(plain, 1.0, 3.0, info=info), speech[16000:48000])[0, 1] > 0.95
