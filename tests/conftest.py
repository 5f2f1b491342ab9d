"""Shared pytest fixtures: the repo on sys.path, offline/no-telemetry environment, the generated
sample media (`sample_dir`, once per session) and a fresh workspace (`workspace`)."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# set before anything imports prefect / transformers / huggingface_hub
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The generated sample media (testdata/samplegen.py; layout in its sample.json). Generated once per
    test session, or reused from $WORDSMILE_SAMPLE_DIR (generated there first if missing)."""
    from testdata.samplegen import make_sample

    env = os.environ.get("WORDSMILE_SAMPLE_DIR")
    dest = Path(env) if env else tmp_path_factory.mktemp("sample") / "sample"
    make_sample(dest)
    return dest


@pytest.fixture
def workspace(tmp_path):
    """A fresh, empty workspace (pipeline.workspace.Workspace) under the test's tmp dir."""
    from pipeline.workspace import Workspace

    return Workspace(tmp_path / "ws")


@contextmanager
def loopback_server(handler_cls, root: Path):
    """Serve `root` on 127.0.0.1 (a free port) with `handler_cls` in a thread; yields the base URL.
    Loopback only: tests never send traffic anywhere else."""
    import http.server
    import threading

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler_cls(*a, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture(scope="session")
def real_clips(tmp_path_factory) -> Path:
    """Regression clips animated from real photographs (testdata/realclips.py), once per session. The
    photos come from PyPI (`pip download face-recognition==1.3.0`, cached in $WORDSMILE_PHOTOS or
    ~/.cache/wordsmile); the clips are cached beside them (deterministic, keyed by the generator's
    version). Without registry access the tests that need them are skipped, saying so."""
    from testdata.realclips import VERSION, PhotosUnavailable, cache_dir, make_clips

    dest = cache_dir() / f"clips-v{VERSION}"
    try:
        make_clips(dest)
    except PhotosUnavailable as e:
        pytest.skip(f"real-photo clips unavailable: pip could not fetch the face_recognition sdist ({e})")
    return dest
