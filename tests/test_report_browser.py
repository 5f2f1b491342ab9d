"""report.html in a real browser (headless Chromium): every image loads, no console messages, no external
URLs, and the page renders. Skips where Chromium is not installed (CI installs it)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_assemble import build

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

# Appended to a copy of the report: records which images failed to decode (the report itself has no script).
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  document.body.setAttribute('data-probe', JSON.stringify({n: imgs.length, bad: bad}));
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
    root = tmp_path_factory.mktemp("report")
    video = make_video(root / "clip.mp4")
    out, _, _ = build(root / "ws", overrides=["assemble.thumbnails=true", "assemble.report_samples=4"],
                      n_videos=3, video_path=str(video))
    return out


def test_report_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html), "report must not load external URLs"
    srcs = re.findall(r"src='([^']+)'", html)
    assert srcs and all((report_dir / s).is_file() for s in srcs)
    assert any("thumb_" in s for s in srcs), "face thumbnails were not made from the source video"
    for needle in ("hist_frames.png", "hist_duration.png", "dim_stats.png", "funnel.png", "curves_0.png",
                   "filter.duplicate"):
        assert needle in html, needle


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
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["n"] >= 9 and got["bad"] == [], got

    shot = tmp_path / "report.png"
    res = chromium("--window-size=1100,2400", f"--screenshot={shot}", (report_dir / "report.html").as_uri())
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
