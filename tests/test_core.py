"""Foundation: config, manifest validation, atomic writes, workspace lock, stage cache, records."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.atomic import atomic_dir, atomic_path, write_json
from pipeline.cache import StageCache
from pipeline.config import ConfigError, describe, load_config
from pipeline.hashing import file_hash, stable_id
from pipeline.manifest import ManifestError, load_manifest
from pipeline.records import Reason, failed, ok, print_summary, skipped, summary_frame
from pipeline.workspace import Workspace, WorkspaceLocked

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ config

def test_config_defaults_overrides_and_hash(tmp_path):
    base = load_config()
    cfg = load_config(None, ["faces.policy=strict", "assemble.split_ratios=[0.7,0.2,0.1]"])
    assert cfg.faces.policy == "strict" and cfg.assemble.split_ratios == [0.7, 0.2, 0.1]
    assert cfg.hash() != base.hash()
    # only the changed section's hash moves: stage caches of other stages stay valid
    assert cfg.section_hash("expressions") == base.section_hash("expressions")
    assert cfg.section_hash("faces") != base.section_hash("faces")
    f = tmp_path / "c.yaml"
    f.write_text("faces:\n  analysis_fps: 12.5\n")
    assert load_config(f).faces.analysis_fps == 12.5


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"faces\.polcy"):
        load_config(None, ["faces.polcy=x"])
    with pytest.raises(ConfigError, match=r"faces\.policy"):
        load_config(None, ["faces.policy=loudest"])
    f = tmp_path / "c.yaml"
    f.write_text("faces: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_every_setting_has_a_reason():
    rows = describe()
    assert len(rows) > 20
    missing = [name for name, _, reason in rows if not reason.strip()]
    assert not missing, f"settings without a reason: {missing}"


# ------------------------------------------------------------------ manifests

def _manifest(tmp_path, body: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(textwrap.dedent(body))
    return p


def test_manifest_errors_are_specific(tmp_path):
    p = _manifest(tmp_path, """\
        name: demo
        sources:
          - id: ok-one
            kind: folder
            path: clips
          - id: ../escape
            kind: table
            path: t.csv
          - id: meld1
            kind: meld
          - id: weird
            kind: tiktok
        """)
    with pytest.raises(ManifestError) as e:
        load_manifest(p)
    msg = str(e.value)
    assert f"{p}:6: sources[1] (id '../escape'): field 'id'" in msg
    assert "sources[2] (id 'meld1'): field 'root': Field required" in msg
    assert "sources[3] (id 'weird')" in msg and "kind must be one of" in msg
    assert "ok-one" not in msg  # a valid entry is not blamed


def test_manifest_duplicates_and_relative_paths(tmp_path):
    p = _manifest(tmp_path, """\
        name: demo
        sources:
          - {id: a, kind: folder, path: clips}
          - {id: a, kind: folder, path: other}
        """)
    with pytest.raises(ManifestError, match="duplicate source ids"):
        load_manifest(p)
    p = _manifest(tmp_path, "name: demo\nsources:\n  - {id: a, kind: folder, path: clips}\n")
    m = load_manifest(p)
    assert m.resolve(m.sources[0].path) == (tmp_path / "clips").resolve()


# ------------------------------------------------------------------ atomic writes

WRITER = """
import sys, time
from pipeline.atomic import atomic_path
dest = sys.argv[1]
with atomic_path(dest) as tmp:
    with open(tmp, "wb") as f:
        for i in range(10_000):
            f.write(b"x" * 65536)
            f.flush()
            if i == 20:
                print("writing", flush=True)
            time.sleep(0.001)
"""


def test_atomic_write_survives_a_killed_writer(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous complete content")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest)], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the destination still holds the old, complete content; only a temp file is left behind
    assert dest.read_bytes() == b"previous complete content"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert leftovers and all(n.startswith(".tmp-") for n in leftovers)
    from pipeline.atomic import clean_stale_tmp

    assert clean_stale_tmp(tmp_path) == len(leftovers)


def test_atomic_path_and_dir_clean_up_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("1")
    assert (tmp_path / "d" / "f").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "d"):
            pass


# ------------------------------------------------------------------ workspace lock

LOCKER = """
import sys, time
from pipeline.workspace import Workspace
with Workspace(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(30)
"""


def test_workspace_lock_excludes_a_second_build(tmp_path):
    ws = Workspace(tmp_path / "ws")
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(ws.root)], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(WorkspaceLocked, match=r"in use by pid \d+"):
            with ws.lock(wait=False):
                pass
        t0 = time.monotonic()
        with pytest.raises(WorkspaceLocked):
            with ws.lock(wait=0.5):
                pass
        assert time.monotonic() - t0 >= 0.5
    finally:
        proc.kill()
        proc.wait()
    with ws.lock(wait=5):  # a killed holder releases the lock (flock)
        pass


def test_safe_child_refuses_traversal(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert ws.safe_child(ws.sources, "abc", "x.mp4").parent.name == "abc"
    with pytest.raises(ValueError, match="escapes"):
        ws.safe_child(ws.sources, "..", "..", "etc")


# ------------------------------------------------------------------ stage cache

def _compute(cache: StageCache, inp: Path, calls: list) -> str:
    key = cache.key(file_hash(inp), "0.000", "1.000")
    hit = cache.get(key)
    if hit:
        return (hit / "result.txt").read_text()
    calls.append(key)
    with cache.put(key) as tmp:
        (tmp / "result.txt").write_text(inp.read_text().upper())
    return (cache.path(key) / "result.txt").read_text()


def test_cache_hit_miss_and_invalidation(tmp_path):
    ws = Workspace(tmp_path / "ws")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("alpha")
    b.write_text("beta")
    calls: list = []
    c1 = StageCache(ws, "faces", "1", {"thr": 0.5})
    assert _compute(c1, a, calls) == "ALPHA" and _compute(c1, b, calls) == "BETA"
    assert len(calls) == 2                                   # two misses
    c2 = StageCache(ws, "faces", "1", {"thr": 0.5})
    _compute(c2, a, calls), _compute(c2, b, calls)
    assert len(calls) == 2                                   # two hits
    # a changed input file misses exactly that item
    time.sleep(0.01)
    a.write_text("alpha2")
    c3 = StageCache(ws, "faces", "1", {"thr": 0.5})
    assert _compute(c3, a, calls) == "ALPHA2" and _compute(c3, b, calls) == "BETA"
    assert len(calls) == 3                                   # one hit, one miss
    # a changed parameter or code version misses everything of that stage
    for c in (StageCache(ws, "faces", "1", {"thr": 0.6}), StageCache(ws, "faces", "2", {"thr": 0.5})):
        n = len(calls)
        _compute(c, a, calls), _compute(c, b, calls)
        assert len(calls) == n + 2
    # another stage's cache is separate; force recomputes and replaces
    cf = StageCache(ws, "faces", "1", {"thr": 0.5}, force=True)
    n = len(calls)
    _compute(cf, b, calls)
    assert len(calls) == n + 1
    assert (c1.path(c1.key(file_hash(b), "0.000", "1.000")) / "DONE").exists()


def test_cache_entry_without_marker_is_not_a_hit(tmp_path):
    ws = Workspace(tmp_path / "ws")
    c = StageCache(ws, "faces", "1")
    key = c.key("x")
    c.path(key).mkdir(parents=True)
    (c.path(key) / "result.txt").write_text("partial")
    assert c.get(key) is None
    with c.put(key) as tmp:
        (tmp / "result.txt").write_text("full")
    assert c.get(key) and (c.path(key) / "result.txt").read_text() == "full"
    meta = json.loads((c.path(key) / "meta.json").read_text())
    assert meta["stage"] == "faces" and meta["code_version"] == "1"


# ------------------------------------------------------------------ records

def test_records_summary_and_ids():
    recs = [ok("faces", "a"), skipped("faces", "b", Reason.NO_FACE, "no face in 40 frames"),
            skipped("faces", "c", Reason.NO_FACE, "no face"), failed("ingest", "v1", Reason.DL_NETWORK, "timeout")]
    s = summary_frame(recs)
    assert int(s[(s.reason == "faces.no_face")]["count"].iloc[0]) == 2
    text = print_summary(recs)
    assert "download.network" in text and "faces.no_face" in text
    assert stable_id("src", "vid", "1.000", "2.000") == stable_id("src", "vid", "1.000", "2.000")
    assert len(stable_id("a")) == 16 and stable_id("a", "b") != stable_id("ab")
    with pytest.raises(ValueError):
        ok("faces", "x").__class__("faces", "x", "done", "ok")


def test_reasons_are_documented():
    doc = (REPO / "docs" / "reasons.md").read_text()
    missing = [r.value for r in Reason if f"`{r.value}`" not in doc]
    assert not missing, f"reasons missing from docs/reasons.md: {missing}"


def test_write_json_is_atomic_and_sorted(tmp_path):
    write_json(tmp_path / "x.json", {"b": 1, "a": 2})
    assert (tmp_path / "x.json").read_text().index('"a"') < (tmp_path / "x.json").read_text().index('"b"')
