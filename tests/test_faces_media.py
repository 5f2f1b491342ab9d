"""The face stage on media whose streams do not start where an MP4's do (issue 24, "Media timelines"):
a broadcast MPEG-TS cut, audio that starts late, a second (silent, default) audio track, and a video
that starts after the container does. Each variant is built here with ffmpeg from one sample clip and
must give the MP4's results; coverage is measured against the utterance, not the frames decoded."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from stages import run_faces

from extract.faces import BLENDSHAPE_INDEX
from pipeline.config import load_config
from pipeline.media import ffmpeg_exe, probe
from pipeline.records import Reason, Status


def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _ctx(workspace):
    from pipeline.context import StageContext

    return StageContext(cfg=load_config(), ws=workspace, run_dir=workspace.runs)


def _seg(path: Path, start: float, end: float) -> dict:
    from pipeline.hashing import file_hash

    return {"segment_id": path.stem, "video_path": str(path), "video_hash": file_hash(path), "start": start, "end": end}


def _variants(src: Path, d: Path) -> dict[str, Path]:
    """The MP4's variants, every one holding the same coded video frames."""
    out = {"mp4": src}
    # a broadcast cut: the same packets with PTS from 3600 s
    out["ts"] = d / "broadcast.ts"
    _ff("-i", str(src), "-c", "copy", "-output_ts_offset", "3600", str(out["ts"]))
    # audio whose first 1.5 s are missing: the rest starts at 1.5 s, in sync with the picture
    # (via a WAV: `-ss 1.5 -itsoffset 1.5` on one input while re-encoding starts the audio at 0 again)
    out["late_audio"] = d / "late_audio.mp4"
    _ff("-ss", "1.5", "-i", str(src), "-map", "0:a", "-c:a", "pcm_s16le", str(d / "tail.wav"))
    _ff("-i", str(src), "-itsoffset", "1.5", "-i", str(d / "tail.wav"), "-map", "0:v", "-map", "1:a",
        "-c:v", "copy", "-c:a", "aac", "-b:a", "64k", str(out["late_audio"]))
    # a silent commentary track marked default before the speech track
    out["two_audio"] = d / "two_audio.mp4"
    _ff("-i", str(src), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=4.4", "-map", "0:v", "-map", "1:a",
        "-map", "0:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "64k", "-disposition:a:0", "default",
        "-disposition:a:1", "0", "-metadata:s:a:0", "language=deu", "-metadata:s:a:1", "language=eng",
        str(out["two_audio"]))
    return out


def test_ts_late_audio_and_two_tracks_give_the_mp4s_face_results(sample_dir, workspace, tmp_path):
    """Before: the TS lost its first frames after a seek, the late audio was read ~1.5 s early (speaker r
    0.81 -> 0.49) and the silent default track hid the speech (no usable audio)."""
    from pipeline.formats.track import read_quality, read_track

    src = sample_dir / "folder" / "two_faces.mp4"
    s = json.loads(src.with_suffix(".signals.json").read_text())["sentences"][1]   # the speaker's second sentence
    ctx = _ctx(workspace)
    got = {}
    variants = _variants(src, tmp_path)
    for name, path in variants.items():
        # the same utterance in each file's own timeline: the TS keeps the AAC priming packet the MP4's
        # edit list hides, so its container starts 64 ms before the first frame and every frame (and
        # the audio with it) sits 64 ms later than in the MP4 (tests/test_media.py checks the same span
        # gives the same frames within one frame period); the other variants start at 0
        shift = getattr(probe(path), "video_start", 0.0)   # (no such field before the fix)
        rec = run_faces(_seg(path, s["start"] + shift, s["end"] + shift), ctx)
        assert rec.status is Status.OK, (name, rec)
        got[name] = ({**read_quality(rec.output), **rec.figures}, read_track(rec.output))
    f0, ref_arr = got["mp4"]
    jaw = BLENDSHAPE_INDEX["jawOpen"]
    for name, (f, arr) in got.items():
        assert f["decided_by"] == f0["decided_by"] == "speaker", name
        assert abs(f["n_frames"] - f0["n_frames"]) <= 1 and f["coverage"] >= 0.97, (name, f["n_frames"], f["coverage"])
        m = min(len(arr["t"]), len(ref_arr["t"]))
        assert np.abs(arr["t"][:m] - ref_arr["t"][:m]).max() < 0.04 + 1e-6, name
        assert np.abs(arr["blendshapes"][:m, jaw] - ref_arr["blendshapes"][:m, jaw]).mean() < 0.02, name
        kept = max(f["speaker_r"].values())
        assert kept == pytest.approx(max(f0["speaker_r"].values()), abs=0.02), (name, f["speaker_r"], f0["speaker_r"])
        assert f["speaker_margin"] >= ctx.cfg.faces.speaker_margin, name
    assert got["two_audio"][0]["audio_stream"] == 1 and got["two_audio"][0]["audio_lang"] == "eng"
    assert f0["audio_stream"] == 0
    late = probe(variants["late_audio"])
    assert late.audio_streams[0]["start"] == pytest.approx(1.5, abs=0.1), late.audio_streams   # really late


def test_coverage_counts_frames_the_media_does_not_have(sample_dir, workspace, tmp_path):
    """A video that starts 1.0 s after the container (the audio starts at 0): an utterance 0.5-2.5 s has
    frames for 1.0-2.5 s only, 75% of it. Before: coverage was measured against the frames decoded (1.0)
    and the sample kept; min_coverage is 0.9."""
    src = sample_dir / "folder" / "talk_01.mp4"
    late = tmp_path / "late_video.mp4"
    _ff("-itsoffset", "1.0", "-i", str(src), "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy", str(late))
    rec = run_faces(_seg(late, 0.5, 2.5), _ctx(workspace))
    assert rec.status is Status.SKIPPED and rec.reason is Reason.LOW_COVERAGE, rec
    assert rec.figures["coverage"] == pytest.approx(0.75, abs=0.03)
    assert rec.figures["lead_frames"] == pytest.approx(12, abs=1) and rec.figures["span_frames"] == 50
    # the same utterance inside the video is covered
    rec = run_faces(_seg(late, 1.2, 3.2), _ctx(workspace))
    assert rec.status is Status.OK and rec.figures["coverage"] >= 0.97, rec
    assert probe(late).video_start == pytest.approx(1.0, abs=0.01)


def test_late_audio_reads_like_its_zero_padded_mp4(sample_dir, workspace, tmp_path):
    """An utterance (0.25-2.05 s) that starts before the late audio (from 1.5 s): the speaker check must
    hear what the file holds, silence until 1.5 s, exactly as in an MP4 whose audio is silent there.
    Before: the audio was read from its first packet on, 1.25 s early: r 0.49 and a speaker 'decided'
    (the MP4 original, whose audio covers the utterance, has r 0.81)."""
    from pipeline.formats.track import read_quality

    src = sample_dir / "folder" / "two_faces.mp4"
    late = _variants(src, tmp_path)["late_audio"]
    padded = tmp_path / "padded.mp4"
    _ff("-i", str(src), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-af", "volume=enable='lt(t,1.5)':volume=0",
        "-c:a", "aac", "-b:a", "64k", str(padded))
    s = json.loads(src.with_suffix(".signals.json").read_text())["sentences"][0]
    ctx = _ctx(workspace)
    got = {}
    for name, path in (("late", late), ("padded", padded)):
        rec = run_faces(_seg(path, s["start"], s["end"]), ctx)
        got[name] = (rec.status, rec.reason, read_quality(rec.output)["speaker_r"])
    (st, reason, r), (st0, reason0, r0) = got["late"], got["padded"]
    assert (st, reason) == (st0, reason0), got
    assert max(r.values()) == pytest.approx(max(r0.values()), abs=0.05), got
