"""report.html in a real browser (headless Chromium): every element a dataset builder looks for is there
(run metadata, funnel per source, kept faces with box and landmarks, a multi-face overview, rejected
examples with frames, distributions, animated previews), every image decodes, no console messages, no
external URLs, and the page renders. Skips the browser part where Chromium is not installed (CI installs it)."""
from __future__ import annotations

import json
import os
import re
import shutil
from html import unescape as html_unescape
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.atomic import write_json
from pipeline.records import Reason, failed, ok, skipped
from test_assemble import build_world, make_ctx, seg_row, smooth_codes, write_entries

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

# Appended to a copy of the report: records which images failed to decode (the report itself has no script).
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const n = sel => document.querySelectorAll(sel).length;
  const drawn = sel => [...document.querySelectorAll(sel)].filter(i => i.naturalWidth > 0).length;
  document.body.setAttribute('data-probe', JSON.stringify({n: imgs.length, bad: bad,
    run: [...document.querySelectorAll('table.run-metadata th')].map(t => t.textContent),
    sources: n('table.funnel-by-source tr') - 1, source_chart: drawn('#funnel img'),
    frames: drawn('.example-frame img'), multi: drawn('.multi-face img'),
    multi_caption: [...document.querySelectorAll('.multi-face figcaption')].map(c => c.textContent),
    rejected: n('.rejected'), rejected_frames: drawn('.rejected img'),
    rejected_text: [...document.querySelectorAll('.rejected')].map(c => c.textContent),
    dist: drawn('#distributions img'), previews: drawn('.preview img'),
    preview_src: [...document.querySelectorAll('.preview img')].map(i => i.getAttribute('src'))}));
});</script>"""


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="wordsmile-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *args],
            capture_output=True, text=True, timeout=timeout)


def make_video(path: Path, seconds: float = 8.0) -> Path:
    from pipeline.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=320x240:rate=10:duration={seconds}", "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A dataset over a real (generated) video with upstream records: an ingest failure, a faces rejection
    of a two-face clip (its quality.json overview has both boxes) and a kept two-face sample."""
    from dataset.assemble import assemble

    root = tmp_path_factory.mktemp("report")
    video = str(make_video(root / "clip.mp4"))
    ctx = make_ctx(root / "ws", ["assemble.thumbnails=true", "assemble.report_samples=4", "assemble.report_previews=2"])
    segs = build_world(ctx.ws, n_videos=3, video_path=video)
    two = [[20.0, 40.0, 140.0, 180.0], [180.0, 50.0, 300.0, 190.0]]
    segs["video_path"] = video
    # the talk samples were kept from two-face clips: their whole frame shows both faces
    for fd in segs.loc[segs["segment_id"].str.startswith("v"), "faces_dir"]:
        q = json.loads((Path(fd) / "quality.json").read_text())
        write_json(Path(fd) / "quality.json",
                   {**q, "n_tracks": 2, "decision_detail": "speaker by mouth-audio r=0.81 (next 0.05)",
                    "overview": {"frame": 5, "t": 0.2, "kept": 1, "boxes": two}})
    # a two-face segment the faces stage rejected (no codes): its entry holds quality.json only
    fd, _ = write_entries(ctx.ws, "rej-two", smooth_codes(5, 20))
    (Path(fd) / "track.npz").unlink()
    write_json(Path(fd) / "quality.json", {"decision": "faces.speaker_undecided", "n_tracks": 2,
                                           "overview": {"frame": 3, "t": 0.5, "kept": -1, "boxes": two}})
    rej = {**seg_row("rej-two", "talk", "vid-two", 3.0, 5.0, "Two people talk.", video_path=video),
           "faces_dir": "", "codes_dir": ""}
    segs = pd.concat([segs, pd.DataFrame([rej])], ignore_index=True)
    recs = [ok("ingest", "talk/vid00"), failed("ingest", "talk/missing", Reason.MISSING_FILE,
                                               "table.csv row 7 (missing): clip /data/missing.mp4 does not exist")]
    recs += [ok("faces", s) for s in segs["segment_id"] if s != "rej-two"]
    recs.append(skipped("faces", "rej-two", Reason.NO_SPEAKER, "mouth-audio r=0.62 vs 0.54: margin 0.08 below "
                        "speaker_margin 0.2"))
    recs[-1].output = fd
    out, _ = assemble(segs, ctx, "demo", records=recs)
    return out


def test_report_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html), "report must not load external URLs"
    srcs = re.findall(r"src='([^']+)'", html)
    assert srcs and all((report_dir / s).is_file() for s in srcs)
    assert any("thumb_" in s for s in srcs), "face frames were not made from the source video"
    for needle in ("hist_frames.png", "hist_duration.png", "dim_stats.png", "funnel.png", "curves_0.png",
                   "filter.duplicate", "distributions.png", "funnel_sources.png", "overview_v0",
                   "preview_", "reject_", "config hash", "build took", "faces.speaker_undecided",
                   "clip /data/missing.mp4 does not exist"):
        assert needle in html, needle
    # the previews are short animations, small enough to ship
    from PIL import Image

    for prev in (report_dir / "report").glob("preview_*.webp"):
        with Image.open(prev) as im:
            assert im.is_animated and 8 <= im.n_frames <= 40 and prev.stat().st_size < 400_000, prev
    info = json.loads((report_dir / "dataset.json").read_text())
    talk = next(f for f in info["funnel_by_source"] if f["source_id"] == "talk")
    assert talk["inputs_ok"] == 1 and talk["inputs_failed"] == 1 and talk["faces"] == talk["segments"] - 1
    assert [e["reason"] for e in info["rejected_examples"]][:2] == ["input.missing_file", "faces.speaker_undecided"]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(report_dir, tmp_path):
    probe = report_dir / "_probe.html"
    probe.write_text((report_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    try:
        res = chromium("--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    m = re.search(r"data-probe=\"([^\"]*)\"", res.stdout)
    assert m, f"probe did not run: {res.stdout[-500:]} {res.stderr[-1500:]}"
    got = json.loads(html_unescape(m.group(1)))
    assert got["n"] >= 9 and got["bad"] == [], got
    assert {"config hash", "build took", "software", "run"} <= set(got["run"]), got["run"]
    assert got["sources"] == 2 and got["source_chart"] >= 2
    assert got["frames"] >= 4 and got["multi"] >= 1 and "speaker by mouth-audio r=0.81" in got["multi_caption"][0]
    assert got["rejected"] >= 3 and got["rejected_frames"] >= 2    # the ingest failure has no frame
    assert any("clip /data/missing.mp4 does not exist" in t for t in got["rejected_text"])
    assert any("speaker_margin 0.2" in t for t in got["rejected_text"])
    assert got["dist"] == 1 and got["previews"] == 2, got

    shot = tmp_path / "report.png"
    res = chromium("--window-size=1100,9000", "--hide-scrollbars", f"--screenshot={shot}",
                   (report_dir / "report.html").as_uri())
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    # the drawn boxes reach the screen: the kept face's green and the other face's red
    import numpy as np
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    green = ((abs(px - (46, 204, 64))).sum(1) < 60).sum()
    red = ((abs(px - (255, 65, 54))).sum(1) < 60).sum()
    assert green > 200 and red > 200, (green, red)
    if os.environ.get("WORDSMILE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["WORDSMILE_SCREENSHOT"])
