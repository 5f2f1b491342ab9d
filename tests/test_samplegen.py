"""testdata/samplegen.py: the generated sample is complete, truthful (pictures and audio follow the
stored driving signals) and byte-for-byte reproducible."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.media import decode, probe, read_audio
from testdata.samplegen import _folder_specs, make_clip, make_sample


def _signals(clip: Path) -> dict:
    return json.loads(clip.with_suffix(".signals.json").read_text())


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_index_and_layout(sample_dir):
    idx = json.loads((sample_dir / "sample.json").read_text())
    for rel in idx["files"]:
        assert (sample_dir / rel).is_file(), rel
    total = sum((sample_dir / rel).stat().st_size for rel in idx["files"])
    assert total < 5e6
    props = idx["properties"]
    for prop in ("small_face", "shot_cut", "no_face_stretch", "two_faces", "vfr", "meld", "web"):
        assert props.get(prop), prop
    folder = sorted(p.name for p in (sample_dir / "folder").glob("*.mp4"))
    assert {"talk_01.mp4", "talk_02.mp4", "talk_03.mp4", "cut.mp4", "two_faces.mp4", "vfr.mp4"} <= set(folder)
    for name in folder:
        clip = sample_dir / "folder" / name
        vtt = clip.with_suffix(".vtt").read_text()
        assert vtt.startswith("WEBVTT") and len(re.findall(r"-->", vtt)) >= 2
        info = probe(clip)
        assert info.has_audio and info.codec == "h264" and 4.0 <= info.duration <= 6.0
    for c in idx["clips"]:
        assert probe(sample_dir / c["path"]).n_frames == c["n_frames"]


def test_table_and_meld_layouts(sample_dir):
    rows = list(csv.DictReader((sample_dir / "table" / "table.csv").open(encoding="utf-8")))
    assert list(rows[0]) == ["video", "start", "end", "text", "speaker", "emotion", "split"] and len(rows) >= 4
    for r in rows:
        assert (sample_dir / "table" / r["video"]).is_file() and float(r["start"]) < float(r["end"])
    meld = sample_dir / "meld"
    cols = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
            "Season", "Episode", "StartTime", "EndTime"]
    dirs = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
    all_rows, missing = [], []
    for split, d in dirs.items():
        with (meld / f"{split}_sent_emo.csv").open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == cols
            for r in reader:
                all_rows.append(r)
                if not (meld / d / f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}.mp4").exists():
                    missing.append(r)
    text = " ".join(r["Utterance"] for r in all_rows)
    assert "\u2026" in text and ("\u2019" in text or "\u201c" in text)
    assert any(re.match(r"^\d:\d\d:\d\d,\d{3}$", r["StartTime"]) for r in all_rows)   # one-digit hour
    assert any(r["StartTime"] == r["EndTime"] for r in all_rows)                      # zero-length span
    assert len(missing) == 1


def test_web_page_and_rolling_captions(sample_dir):
    web = sample_dir / "web"
    html = (web / "index.html").read_text()
    assert '<video' in html and 'src="clip.mp4"' in html
    assert re.search(r'<track[^>]*kind="captions"[^>]*srclang="en"[^>]*src="clip.en.vtt"', html)
    assert probe(web / "clip.mp4").has_audio and (web / "clip.en.vtt").read_text().startswith("WEBVTT")
    rolling = (web / "rolling.en.vtt").read_text()
    assert rolling.startswith("WEBVTT") and re.search(r"<\d\d:\d\d:\d\d\.\d{3}><c> \w+", rolling)
    # rolling: each new cue repeats the previous line before its new words
    cues = [c.splitlines() for c in rolling.split("\n\n") if "-->" in c]
    lines = [c[1] for c in cues[2:] if len(c) > 2 and "<c>" in c[2]]
    assert lines and all(ln.strip() for ln in lines)


def test_signals_vary_and_faces_match_the_story(sample_dir):
    for name in ("talk_01", "talk_02", "talk_03", "cut", "two_faces", "vfr"):
        s = _signals(sample_dir / "folder" / f"{name}.mp4")
        assert len(s["t"]) == len(s["mouth_open"]) == len(s["smile"]) == len(s["brow_raise"]) == len(s["face_boxes"])
        assert np.std(s["mouth_open"]) > 0.15 and np.std(s["smile"]) > 0.03 and np.std(s["brow_raise"]) > 0.05
        assert min(s["mouth_open"]) == 0.0 and max(s["mouth_open"]) > 0.8
    two = _signals(sample_dir / "folder" / "two_faces.mp4")
    assert all(len(b) == 2 for b in two["face_boxes"])
    cut = _signals(sample_dir / "folder" / "cut.mp4")
    t = np.array(cut["t"])
    n_faces = np.array([len(b) for b in cut["face_boxes"]])
    assert cut["shots"] == [2.0, 3.0] and (n_faces[(t >= 2.0) & (t < 3.0)] == 0).all()
    assert (n_faces[(t < 2.0) | (t >= 3.0)] == 1).all()
    small = _signals(sample_dir / "folder" / "talk_03.mp4")
    x0, _, x1, _ = small["face_boxes"][0][0]
    assert 0.07 < (x1 - x0) / small["size"][0] < 0.13


def _mouth_darkness(clip: Path, s: dict) -> np.ndarray:
    """Per frame: the share of dark pixels in the lower half of the speaking face's box."""
    frames = np.concatenate([b.frames for b in decode(clip, fps=None, max_side=None)])
    out = []
    for f, boxes in zip(frames, s["face_boxes"]):
        if not boxes:
            out.append(np.nan)
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[0])
        ym = y0 + (y1 - y0) // 2
        region = f[ym:y1, x0 + (x1 - x0) // 4: x1 - (x1 - x0) // 4].astype(int)
        out.append(float((region.sum(-1) < 150).mean()))
    return np.array(out)


@pytest.mark.parametrize("name", ["talk_01", "two_faces"])
def test_picture_and_voice_follow_mouth_open(sample_dir, name):
    clip = sample_dir / "folder" / f"{name}.mp4"
    s = _signals(clip)
    mouth = np.array(s["mouth_open"])
    dark = _mouth_darkness(clip, s)
    ok = ~np.isnan(dark)
    assert np.corrcoef(dark[ok], mouth[ok])[0, 1] > 0.8
    a = read_audio(clip, rate=16000)
    hop = 16000 // 25
    rms = np.sqrt(np.array([np.mean(a[i * hop:(i + 1) * hop] ** 2) for i in range(len(mouth))]))
    assert np.corrcoef(rms, mouth)[0, 1] > 0.8
    if name == "two_faces":
        # the silent face (second box) keeps its mouth shut
        other = [{"face_boxes": [b[1:]]} for b in s["face_boxes"]]
        quiet = _mouth_darkness(clip, {"face_boxes": [o["face_boxes"][0] for o in other]})
        assert np.std(quiet) < 0.02 and np.nanmax(quiet) < dark.max() / 3


def test_generation_is_deterministic(tmp_path):
    a = make_sample(tmp_path / "a", parts=["meld"])
    b = make_sample(tmp_path / "b", parts=["meld"])
    assert a == b
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert da == db and len(da) > 8
    vfr = [s for s in _folder_specs() if s.name == "vfr"][0]
    make_clip(vfr, tmp_path / "v1" / "vfr.mp4")
    make_clip(vfr, tmp_path / "v2" / "vfr.mp4")
    assert _digests(tmp_path / "v1") == _digests(tmp_path / "v2")


def test_make_sample_reuses_and_refuses(tmp_path, sample_dir):
    # a complete sample is reused (no regeneration: files untouched)
    before = {p: p.stat().st_mtime_ns for p in sample_dir.rglob("*.mp4")}
    make_sample(sample_dir)
    assert before == {p: p.stat().st_mtime_ns for p in sample_dir.rglob("*.mp4")}
    # a folder that is not a sample is never overwritten
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="mine"):
        make_sample(other, force=True)
    assert (other / "thesis.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="unknown sample parts"):
        make_sample(tmp_path / "x", parts=["nope"])


def test_cli_command(tmp_path, sample_dir):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    from testdata.cli import register

    register(app)

    @app.command("noop")
    def _noop():  # a second command keeps typer from collapsing the app into `make`
        pass

    runner = CliRunner()
    res = runner.invoke(app, ["make", "--help"])
    assert res.exit_code == 0 and "--force" in res.output and "DEST" in res.output
    res = runner.invoke(app, ["make", str(sample_dir)])
    assert res.exit_code == 0, res.output
    assert "clips" in res.output
