"""Faults: SIGKILL at random points of a build (each followed by a rerun), disk full during a write, two
builds on one workspace, and a flaky loopback server failing 30% of requests. After each: reruns
finish, no corrupt or half-written file is ever found under a final name, and the outputs equal a clean
build's (stage-1 files byte for byte, Parquet content).

    python -m pytest -q tests/test_faults.py               # 3 kill points + the other faults
    python -m pytest -q -m slow tests/test_faults.py       # 12 more kill points
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.formats.dataset import read_table

from conftest import loopback_server

from pipeline.atomic import TMP_PREFIX

REPO = Path(__file__).resolve().parent.parent
NAME = "faults"


# ---------------------------------------------------------------- helpers

def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "WORDSMILE_NO_PROGRESS": "1"}


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wordsmile.cli", *map(str, args)], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(*args, timeout: float = 600) -> tuple[int, str]:
    p = start(*args)
    out = p.communicate(timeout=timeout)[0].decode("utf-8", "replace")
    return p.returncode, out


def manifest(tmp_path: Path, sample_dir: Path) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(f"name: {NAME}\nlicense: CC-BY-4.0\nsources:\n"
                 f"  - {{id: table, kind: table, path: {sample_dir / 'table' / 'table.csv'}, align: 'off'}}\n")
    return p


def stage1_digest(ds: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ds.glob("*stage1*"))}


def content(ds: Path) -> tuple[dict, list]:
    """What must equal a clean build's: the stage-1 files' bytes and the Parquet rows (codes included)."""
    df = read_table(ds).sort_values("sample_id")
    rows = [[r.sample_id, r.split, r.text, int(r.n_frames), [list(map(float, f)) for f in r.codes]]
            for r in df.itertuples()]
    return stage1_digest(ds), rows


def check_integrity(ws: Path) -> int:
    """Every file under a final name is complete and readable; every cache entry is finished. Returns
    the number of files checked; AssertionError naming the first broken one."""
    from dataset.release import safe_load_pickle

    n = 0
    for p in sorted(ws.rglob("*")):
        rel = p.relative_to(ws)
        if any(part.startswith(TMP_PREFIX) for part in rel.parts):
            continue   # a killed writer's temporary: never read, removed by the next build
        if p.is_dir():
            if len(rel.parts) == 4 and rel.parts[0] == "cache":   # cache/STAGE/ab/KEY
                assert {"DONE", "meta.json", "record.json"} <= {c.name for c in p.iterdir()}, f"unfinished {rel}"
            if len(rel.parts) == 2 and rel.parts[0] == "datasets":
                assert (p / "dataset.json").is_file() and (p / "data" / "train.parquet").is_file(), f"incomplete {rel}"
            continue
        n += 1
        try:
            if p.suffix == ".parquet":
                pq.read_table(p)
            elif p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".npz":
                with np.load(p, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            elif p.suffix == ".npy":
                np.load(p, allow_pickle=False)
            elif p.suffix == ".pkl":
                safe_load_pickle(p)
            elif p.suffix == ".sqlite":
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                try:
                    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                finally:
                    con.close()
        except Exception as e:  # noqa: BLE001 - reported with the file's name
            raise AssertionError(f"{rel} is corrupt or half-written: {type(e).__name__}: {e}") from None
    return n


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample_dir):
    """A clean build: its dataset content and wall time."""
    tmp = tmp_path_factory.mktemp("ref")
    m = manifest(tmp, sample_dir)
    t0 = time.monotonic()
    rc, out = run("build", m, "-w", tmp / "ws")
    assert rc == 0, out[-3000:]
    return {"manifest": m, "content": content(tmp / "ws" / "datasets" / NAME), "seconds": time.monotonic() - t0,
            "ws": tmp / "ws"}


# ---------------------------------------------------------------- SIGKILL

def _progress(ws: Path, since: float) -> str:
    """What the killed build had finished: cache entries and outputs written after `since`."""
    def newer(paths):
        return sum(1 for p in paths if p.stat().st_mtime >= since)
    faces = newer((ws / "cache" / "faces").glob("*/*/DONE"))
    expr = newer((ws / "cache" / "expressions").glob("*/*/DONE"))
    ds = ws / "datasets" / NAME
    return (f"faces {faces}, expressions {expr}" + (", dataset" if ds.exists() and ds.stat().st_mtime >= since
                                                     else ""))


def kill_series(tmp_path: Path, ref: dict, n: int, seed: int) -> list[dict]:
    """n kills at seeded random delays, each followed by an integrity check, a rerun and a comparison
    with the clean build. Kills after the first run on the same workspace with --force all, so every
    point lands in real work (ingest, faces, expressions or assembly)."""
    rng = random.Random(seed)
    ws = tmp_path / "ws"
    log = []
    for i in range(n):
        delay = round(rng.uniform(0.3, ref["seconds"]), 2)
        t0 = time.time()
        p = start("build", ref["manifest"], "-w", ws, *(["--force", "all"] if i else []))
        time.sleep(delay)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        files = check_integrity(ws)
        state = _progress(ws, t0)
        rc, out = run("build", ref["manifest"], "-w", ws)
        assert rc == 0, f"rerun after a kill at {delay} s failed:\n{out[-3000:]}"
        assert content(ws / "datasets" / NAME) == ref["content"], f"kill at {delay} s: output differs"
        assert not list(ws.rglob(TMP_PREFIX + "*")), "temporary files left after the rerun"
        log.append({"delay_s": delay, "killed": killed, "done_at_kill": state, "files_checked": files})
    out = os.environ.get("WORDSMILE_FIGURES")
    if out:
        Path(out).write_text(json.dumps({"reference_s": round(ref["seconds"], 2), "kills": log}, indent=1))
    assert sum(x["killed"] for x in log) >= max(1, int(0.6 * n)), log
    return log


def test_sigkill_at_random_points_then_rerun(tmp_path, reference):
    kill_series(tmp_path, reference, n=3, seed=9)


@pytest.mark.slow
def test_sigkill_at_twelve_more_points(tmp_path, reference):
    kill_series(tmp_path, reference, n=12, seed=2026)


# ---------------------------------------------------------------- two builds, one workspace

def test_two_builds_on_one_workspace(tmp_path, reference):
    ws = tmp_path / "ws"
    a = start("build", reference["manifest"], "-w", ws)
    lock = ws / ".lock"
    deadline = time.time() + 120
    while time.time() < deadline and a.poll() is None:
        if lock.exists() and lock.read_text().startswith("pid"):
            break
        time.sleep(0.05)
    assert a.poll() is None, "the first build finished before the second could start"
    rc, out = run("build", reference["manifest"], "-w", ws)
    assert rc != 0 and "is in use by pid" in out and str(a.pid) in out, out[-2000:]
    assert "Traceback" not in out
    waiter = start("build", reference["manifest"], "-w", ws, "--wait")   # waits for the lock, then resumes
    assert a.wait(timeout=600) == 0, a.stdout.read().decode()[-3000:]
    a.stdout.close()
    w_out = waiter.communicate(timeout=600)[0].decode()
    assert waiter.returncode == 0, w_out[-3000:]
    check_integrity(ws)
    assert content(ws / "datasets" / NAME) == reference["content"]


# ---------------------------------------------------------------- disk full

@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (root only; skipped where mounting is not permitted). Yields (path, grow)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_fails_cleanly_then_resumes(small_disk, reference):
    mnt, grow = small_disk
    ws = mnt / "ws"
    rc, out = run("build", reference["manifest"], "-w", ws)
    assert rc != 0 or "failed" in out, out[-3000:]
    assert "no space left on device" in out.lower(), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    check_integrity(ws)
    grow()
    rc, out = run("build", reference["manifest"], "-w", ws)
    assert rc == 0, out[-3000:]
    check_integrity(ws)
    assert content(ws / "datasets" / NAME) == reference["content"]


# ---------------------------------------------------------------- flaky loopback server

class _Flaky(http.server.SimpleHTTPRequestHandler):
    rng = random.Random(30)
    fail_rate = 0.3
    lock = threading.Lock()
    served: list = []

    def log_message(self, *a):
        pass

    def _fail(self) -> bool:
        with self.lock:
            bad = self.rng.random() < self.fail_rate
        type(self).served.append((self.path, bad))
        if bad:
            self.send_error(503, "flaky test server")
        return bad

    def do_GET(self):
        if not self._fail():
            super().do_GET()

    def do_HEAD(self):
        if not self._fail():
            super().do_HEAD()


PAGE = """<!DOCTYPE html><html><head><title>flaky {n}</title></head><body>
<video src="clip{n}.mp4"><track kind="captions" srclang="en" src="clip{n}.en.vtt"></video></body></html>"""


@pytest.fixture
def flaky_server(sample_dir, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    vtt = (sample_dir / "web" / "clip.en.vtt").read_text()
    for n in (1, 2, 3):
        shutil.copy(sample_dir / "web" / "clip.mp4", root / f"clip{n}.mp4")
        (root / f"clip{n}.en.vtt").write_text(vtt.replace("Welcome", f"Welcome number {n}"))
        (root / f"p{n}.html").write_text(PAGE.format(n=n))
    handler = type("H", (_Flaky,), {"rng": random.Random(30), "served": []})
    with loopback_server(handler, root) as url:
        yield url, handler


FAST = ["orchestration.max_failed_share=1", "sources.youtube.allow_private_urls=true", "sources.youtube.sleep_s=0", "sources.youtube.backoff_s=0",
        "sources.youtube.rate_limit_per_min=0", "sources.youtube.concurrency=1", "sources.youtube.socket_timeout_s=5"]


def test_flaky_server_build_finishes_and_reruns_complete_it(flaky_server, tmp_path):
    url, handler = flaky_server
    m = tmp_path / "web.yaml"
    m.write_text(f"name: {NAME}\nlicense: CC-BY-4.0\nsources:\n  - id: web\n    kind: youtube\n    align: 'off'\n"
                 "    urls: [" + ", ".join(f"'{url}/p{n}.html'" for n in (1, 2, 3)) + "]\n")
    sets = [a for s in FAST for a in ("--set", s)]
    ws = tmp_path / "ws"
    runs = []
    for i in range(8):   # the first build without retries (so the seeded failures show), then 2 retries
        rc, out = run("build", m, "-w", ws, *sets, "--set", f"sources.youtube.retries={0 if i == 0 else 2}")
        # the build finishes whatever the server does; it exits 1 (and says so) only when nothing came through
        assert rc == 0 or (rc == 1 and "no sample was produced" in out), out[-3000:]
        check_integrity(ws)
        run_dir = max((ws / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        recs = pd.read_parquet(run_dir / "records.parquet")
        ing = recs[recs.stage == "ingest"]
        runs.append(sorted(zip(ing.item_id, ing.reason)))
        bad = ing[ing.status != "ok"]
        assert set(bad.reason) <= {"download.network", "download.rate_limited"}, bad[["item_id", "reason", "detail"]]
        if bad.empty and len(ing) == 3:
            break
    assert len(runs) >= 2, f"the seeded server failed nothing: {handler.served}"
    assert len(ing) == 3 and (ing.status == "ok").all(), runs
    n_req, n_failed = len(handler.served), sum(f for _, f in handler.served)
    got = content(ws / "datasets" / NAME)

    # the same build against the server with failures switched off
    handler.fail_rate = 0.0
    ws2 = tmp_path / "ws-clean"
    rc, out = run("build", m, "-w", ws2, *sets, "--set", "sources.youtube.retries=0")
    assert rc == 0, out[-3000:]
    assert got == content(ws2 / "datasets" / NAME)
    out = os.environ.get("WORDSMILE_FIGURES")
    if out:
        Path(out).write_text(json.dumps({"builds_until_complete": len(runs), "requests": n_req,
                                         "failed_requests": n_failed, "ingest_per_run": runs}, indent=1))


# ---------------------------------------------------------------- releases on a full or read-only disk (issue 15)

def _mount(mnt: Path, opts: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, opts) -> a fresh tmpfs under tmp_path; all unmounted afterwards."""
    mounted = []

    def mount(name: str, opts: str) -> Path:
        mnt = tmp_path / name
        _mount(mnt, opts)
        mounted.append(mnt)
        return mnt

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from test_assemble import build

    out, _, _ = build(tmp_path_factory.mktemp("relds") / "ws", n_videos=2)
    return out


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def test_release_on_a_full_disk_fails_cleanly_then_resumes(tmpfs, small_dataset):
    need = _size(small_dataset)
    # 1. too small for the release folder: stops, says so, keeps nothing
    mnt = tmpfs("full", f"size={need // 2}")
    ws = mnt / "ws"
    rc, out = run("release", small_dataset, "--version", "1.0", "--tar", "-w", ws)
    assert rc == 2 and "no space left on device" in out and "Traceback" not in out, out[-3000:]
    assert out.strip().count("\n") == 0, out
    assert [p.name for p in (ws / "releases").iterdir() if p.name != ".lock"] == []
    # 2. room for the folder but not its archive: the folder is kept (verified), the archive is not
    subprocess.run(["mount", "-o", f"remount,size={need + need // 2 + 64 * 1024}", str(mnt)], check=True)
    rc, out = run("release", small_dataset, "--version", "1.0", "--tar", "-w", ws)
    assert rc == 2 and "no space left on device" in out and "Traceback" not in out, out[-3000:]
    rel = ws / "releases" / "demo-1.0"
    from dataset.release import verify

    assert verify(rel) == [] and not (ws / "releases" / "demo-1.0.tar.gz").exists()
    assert not [p for p in (ws / "releases").iterdir() if p.name.startswith(TMP_PREFIX)]
    # 3. more room: the same command resumes and writes only the archive
    subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
    rc, out = run("release", small_dataset, "--version", "1.0", "--tar", "-w", ws)
    assert rc == 0, out[-3000:]
    assert verify(ws / "releases" / "demo-1.0.tar.gz") == []


def test_read_only_workspace_is_one_line_not_a_traceback(tmpfs, tmp_path, sample_dir, small_dataset):
    ro = tmpfs("ro", "ro,size=1m")
    m = manifest(tmp_path, sample_dir)
    for args in (("build", m, "-w", ro / "ws"), ("ingest", m, "-w", ro / "ws"),
                 ("release", small_dataset, "--version", "1.0", "-w", ro / "ws")):
        rc, out = run(*args)
        assert rc == 2 and "Traceback" not in out, out[-3000:]
        assert "Read-only file system" in out and "--workspace" in out and out.strip().count("\n") == 0, out
