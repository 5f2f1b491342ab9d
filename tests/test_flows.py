"""Orchestration: a real Prefect server + deployment + worker, resume after SIGKILL, single-stage reruns,
a broken item, and the Dask runner. The builds use a small manifest over the generated sample media."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.formats.dataset import read_table

from pipeline.records import Reason

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.prefect


def _manifest(tmp_path: Path, sample_dir: Path, broken: bool = False) -> Path:
    """The sample's table and folder sources; optionally a table row pointing at a corrupt clip."""
    table = sample_dir / "table"
    srcs = [f"  - {{id: table, kind: table, path: {table / 'table.csv'}, align: 'off'}}",   # generated voices
            f"  - {{id: talk, kind: folder, path: {sample_dir / 'folder'}, pattern: 'talk_0[12].mp4', align: 'off'}}"]
    if broken:
        bad = tmp_path / "broken"
        bad.mkdir(exist_ok=True)
        good = sorted(table.glob("clips/*.mp4"))[0]
        data = good.read_bytes()
        (bad / "corrupt.mp4").write_bytes(data[: len(data) // 3][:200] + b"\0" * 4096)
        (bad / "t.csv").write_text("video,start,end,text\ncorrupt.mp4,0.0,2.0,This clip is broken.\n"
                                   f"{good},0.0,2.0,This clip is fine.\n")
        srcs.append(f"  - {{id: broken, kind: table, path: {bad / 't.csv'}, align: 'off'}}")
    p = tmp_path / "m.yaml"
    p.write_text("name: flowtest\nlicense: CC-BY-4.0\nsources:\n" + "\n".join(srcs) + "\n")
    return p


def _stage1_digest(ds: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ds.glob("*stage1*"))}


def _parquet_content(ds: Path) -> list:
    df = read_table(ds)
    return df[["sample_id", "split", "text", "n_frames"]].values.tolist() + [
        [float(sum(map(sum, c))) for c in df["codes"]]]


@pytest.fixture(autouse=True)
def flow_roots(tmp_path, monkeypatch):
    """Flow parameters may name paths only under WORDSMILE_FLOW_ROOTS (and the worker's folder)."""
    monkeypatch.setenv("WORDSMILE_FLOW_ROOTS", str(tmp_path))


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_rerun_stage_broken_item_and_dask(tmp_path, sample_dir, harness):
    from flows.flows import assemble_dataset, build_dataset

    m = _manifest(tmp_path, sample_dir, broken=True)
    ws = tmp_path / "ws"
    out = build_dataset(manifest=str(m), workspace=str(ws))
    ds = Path(out["dataset"])
    assert (ds / "train_stage1_exps.pkl").exists() or (ds / "test_stage1_exps.pkl").exists()
    # the broken item is counted, not fatal
    recs = pd.read_parquet(Path(out["run_dir"]) / "records.parquet")
    bad = recs[recs.status == "failed"]
    assert Reason.MEDIA_UNREADABLE.value in set(bad.reason), bad
    assert (recs[(recs.stage == "faces") & (recs.status == "ok")].shape[0]) >= 3

    # assemble-only rerun with a changed filter: no faces/expressions work, assembly changes
    n_before = len(read_table(ds))
    entries = lambda: sorted(p.name for p in (ws / "cache").glob("*/*/*"))  # noqa: E731
    before = entries()
    out2 = assemble_dataset(manifest=str(m), workspace=str(ws), overrides=["assemble.min_frames=100000"])
    assert entries() == before
    assert out2["cache"] == {} or all(v["misses"] == 0 for v in out2["cache"].values())
    ds2 = Path(out2["dataset"])
    n_after = len(read_table(ds2)) if (ds2 / "data" / "train.parquet").exists() else 0
    assert n_after < n_before
    recs2 = pd.read_parquet(Path(out2["run_dir"]) / "records.parquet")
    assert Reason.TOO_FEW_FRAMES.value in set(recs2.reason)

    # back to the default filters, then the Dask runner (2 local worker processes) gives the same dataset
    out3 = assemble_dataset(manifest=str(m), workspace=str(ws))
    ref = (_stage1_digest(Path(out3["dataset"])), _parquet_content(Path(out3["dataset"])))
    ws_dask = tmp_path / "ws-dask"
    out4 = build_dataset(manifest=str(m), workspace=str(ws_dask), runner="dask", dask_workers=2)
    got = (_stage1_digest(Path(out4["dataset"])), _parquet_content(Path(out4["dataset"])))
    assert got == ref
    # the same cache counts from Dask worker processes as from the flow's threads (stats merged from disk)
    assert out4["cache"] == out["cache"] and out["cache"]["faces"]["misses"] >= 3, (out["cache"], out4["cache"])
    prov = json.loads((Path(out4["dataset"]) / "provenance" / "run.json").read_text())
    assert prov["cache"]["faces"]["misses"] == out4["cache"]["faces"]["misses"]


def _wordsmile(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORDSMILE_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "wordsmile.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_sigkill_mid_extraction_resumes(tmp_path, sample_dir):
    m = _manifest(tmp_path, sample_dir)
    ws = tmp_path / "ws"
    faces = ws / "cache" / "faces"
    proc = _wordsmile("build", str(m), "-w", str(ws))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list(faces.glob("*/*/DONE"))) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "build finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(faces.glob("*/*/DONE")))
    assert done_before >= 1

    rerun = _wordsmile("build", str(m), "-w", str(ws))
    log = rerun.communicate(timeout=600)[0].decode()
    assert rerun.returncode == 0, log[-3000:]
    run_dir = max((ws / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    cache = json.loads((run_dir / "run.json").read_text())["cache"]
    assert cache["faces"]["hits"] >= done_before, cache  # finished items were not recomputed
    assert not list(ws.rglob(".tmp-*")), "temporary files were left behind"

    ref_ws = tmp_path / "ref"
    ref = _wordsmile("build", str(m), "-w", str(ref_ws))
    log = ref.communicate(timeout=600)[0].decode()
    assert ref.returncode == 0, log[-3000:]
    a, b = ws / "datasets" / "flowtest", ref_ws / "datasets" / "flowtest"
    assert _stage1_digest(a) == _stage1_digest(b) and _stage1_digest(a)
    assert _parquet_content(a) == _parquet_content(b)


@pytest.mark.timeout(900)
def test_deployment_runs_on_a_real_server_and_worker(tmp_path, sample_dir):
    from flows.server import local_server, run_deployment, setup

    m = _manifest(tmp_path, sample_dir)
    ws = tmp_path / "ws"
    with local_server(home=tmp_path / "prefect-home", log=tmp_path / "server.log") as env:
        assert env["PREFECT_API_URL"].startswith("http://127.0.0.1:")
        setup(env)
        state = run_deployment(env, "build-dataset/sample", {"manifest": str(m), "workspace": str(ws)})
    assert state == "COMPLETED", (tmp_path / "server.log").read_text()[-3000:]
    ds = ws / "datasets" / "flowtest"
    assert (ds / "dataset.json").exists() and (ds / "data" / "test.parquet").exists()


def test_train_and_publish_flows_on_a_built_dataset(tmp_path, sample_dir, harness):
    """`train-model` runs the CLI's training code on a freshly built dataset and writes checkpoints;
    `publish-release` releases, verifies and publishes it to a second folder."""
    from flows.flows import publish_release, train_model
    from dataset.release import verify
    from wordsmile.build import build

    m = _manifest(tmp_path, sample_dir)
    res = build(m, tmp_path / "ws")
    out = train_model(dataset=str(res.dataset_dir), workspace=str(tmp_path / "ws"),
                      out=str(tmp_path / "model"), overrides=["max_steps=5", "eval_every=5"])
    assert (tmp_path / "model" / "best.pt").exists() and (tmp_path / "model" / "log.csv").exists()
    assert out["steps"] == 5, out
    pub = publish_release(dataset=str(res.dataset_dir), version="1.0.0", workspace=str(tmp_path / "ws"),
                          url=f"file://{tmp_path / 'pub'}")
    assert Path(pub["release"]).name == "flowtest-1.0.0"
    assert verify(tmp_path / "pub" / "flowtest-1.0.0") == []
