"""Scale-out with the processes a cluster runs, all on 127.0.0.1 (issue 18; docs/scaling.md):

1. a Prefect server on a throwaway PostgreSQL cluster (flows/cluster.py: initdb/pg_ctl in a temp folder);
2. a Dask cluster of separate `dask scheduler` / `dask worker --nthreads 1` processes, `build-dataset`
   run through a deployment with dask_address: byte-identical to a single-process `wordsmile build -j 1`;
3. two work pools: flame53 expressions routed to `wordsmile-gpu` by deployment, capped by the `gpu` tag;
4. faults: a Dask worker SIGKILLed mid faces stage, the Prefect server restarted mid run.

Minutes, not seconds: marked `scale`, kept out of the default run; `make scale` runs them."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from flows.cluster import dask_cluster, postgres, stop_group
from pipeline.formats.dataset import read_table
from flows.server import GPU_POOL, POOL, PrefectServer, api_get, api_post, setup, start_worker, trigger, wait_for_run

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.scale, pytest.mark.prefect, pytest.mark.timeout(2400)]
DATASET_FILES = ("*_stage1_*.pkl", "stage1_mean.npy", "stage1_std.npy", "data/*.parquet")


def _sample_manifest(d: Path, sample_dir: Path) -> Path:
    """manifests/sample.yaml (22 utterances, 14 clips) pointed at the generated sample media."""
    text = (REPO / "manifests" / "sample.yaml").read_text().replace("../sample_data", str(sample_dir))
    p = d / "sample.yaml"
    p.write_text(text)
    return p


def _dataset_digest(ds: Path) -> dict:
    files = sorted(p for pat in DATASET_FILES for p in ds.glob(pat))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _last_run(ws: Path) -> Path:
    return max((ws / "runs").iterdir(), key=lambda p: p.name)


def _done(ws: Path, stage: str = "faces") -> int:
    return len(list((ws / "cache" / stage).glob("*/*/DONE")))


def _wait_for_done(ws: Path, n: int, rid: str, env: dict, timeout: float = 900) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        k = _done(ws)
        if k >= n:
            return k
        time.sleep(0.2)
    raise AssertionError(f"faces stage did not reach {n} entries in {timeout:.0f} s (run {rid}: "
                         f"{api_get(env, f'flow_runs/{rid}')['state_type']})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL + a Prefect server on it + both pools, deployments, limits + one worker per pool."""
    d = tmp_path_factory.mktemp("stack")
    with postgres() as pg:
        srv = PrefectServer(home=d / "home", log=d / "server.log", db_url=pg.url)
        env = srv.start()
        # what the workers' operator allows flow parameters to name: the tests' folders, local schedulers
        env.update(WORDSMILE_FLOW_ROOTS=str(tmp_path_factory.getbasetemp()),
                   WORDSMILE_DASK_ADDRESSES="tcp://127.0.0.1:*")
        workers = []
        try:
            setup(env)
            workers = [start_worker(env, POOL, d / "worker-cpu.log"), start_worker(env, GPU_POOL, d / "worker-gpu.log")]
            yield SimpleNamespace(env=env, pg=pg, srv=srv, dir=d)
        finally:
            for w in workers:
                stop_group(w)
            srv.stop()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, sample_dir) -> Path:
    return _sample_manifest(tmp_path_factory.mktemp("manifest"), sample_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, manifest) -> SimpleNamespace:
    """The single-process build: `wordsmile build MANIFEST -j 1`."""
    ws = tmp_path_factory.mktemp("ref") / "ws"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORDSMILE_NO_PROGRESS": "1"}
    p = subprocess.run([sys.executable, "-m", "wordsmile.cli", "build", str(manifest), "-w", str(ws), "-j", "1"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ds = ws / "datasets" / "sample"
    segs = pd.read_parquet(ws / "state" / "sample" / "ingest.parquet")
    return SimpleNamespace(ws=ws, ds=ds, digest=_dataset_digest(ds), segments=sorted(segs["segment_id"]))


def test_server_runs_on_postgresql(stack):
    """The server's tables live in our PostgreSQL cluster (not a SQLite file) and hold the pools."""
    assert stack.env["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    pools = stack.pg.psql("select name from work_pool order by name").split()
    assert {POOL, GPU_POOL} <= set(pools)
    deps = stack.pg.psql("select d.name || '@' || w.name from deployment d join work_queue q on "
                         "d.work_queue_id = q.id join work_pool w on q.work_pool_id = w.id").split()
    assert "gpu@" + GPU_POOL in deps and "sample@" + POOL in deps
    assert not list((stack.dir / "home").rglob("*.db")), "the server wrote a SQLite database"
    assert api_get(stack.env, "concurrency_limits/tag/gpu")["concurrency_limit"] == 1


def test_dask_cluster_of_processes_matches_single_process(stack, manifest, reference, tmp_path):
    """`build-dataset` on a deployment with dask_address: the tasks run in two `dask worker` processes,
    the dataset is byte-identical to `wordsmile build -j 1`."""
    ws = tmp_path / "ws"
    with dask_cluster(2, env_extra={"PREFECT_API_URL": stack.env["PREFECT_API_URL"]}, logdir=tmp_path / "dask") as dc:
        rid = trigger(stack.env, "build-dataset/sample", {"manifest": str(manifest), "workspace": str(ws),
                                                          "runner": "dask", "dask_address": dc.address})
        state = wait_for_run(stack.env, rid, 1800)
        logs = {p.name: p.read_text() for p in (tmp_path / "dask").glob("worker-*.log")}
    assert state == "COMPLETED", (stack.dir / "worker-cpu.log").read_text()[-4000:]
    ds = ws / "datasets" / "sample"
    assert _dataset_digest(ds) == reference.digest
    # both worker processes did face work (their own logs name each task run they finished)
    per_worker = {k: v.count("Task run 'face ") for k, v in logs.items()}
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    assert int(stack.pg.psql(f"select count(*) from task_run where flow_run_id in (select id from flow_run "
                             f"where parent_task_run_id in (select id from task_run where flow_run_id = '{rid}'))"
                             )) >= len(reference.segments)


def test_killed_dask_worker_mid_faces(stack, manifest, reference, tmp_path):
    """SIGKILL one of two `dask worker` processes (nanny included) during the faces stage: the run
    completes on the survivor, every item is in the dataset exactly once (identical to the reference),
    and a rerun reuses every cache entry."""
    ws = tmp_path / "ws"
    n = len(reference.segments)
    with dask_cluster(2, env_extra={"PREFECT_API_URL": stack.env["PREFECT_API_URL"]}, logdir=tmp_path / "dask") as dc:
        params = {"manifest": str(manifest), "workspace": str(ws), "runner": "dask", "dask_address": dc.address}
        rid = trigger(stack.env, "build-dataset/sample", params)
        k = _wait_for_done(ws, 2, rid, stack.env)
        assert k < n, "the faces stage finished before a worker could be killed"
        dc.kill_worker(0)
        killed_at = _done(ws)
        state = wait_for_run(stack.env, rid, 1800)
        assert state == "COMPLETED", (stack.dir / "worker-cpu.log").read_text()[-4000:]
        assert killed_at < n
        recs = pd.read_parquet(_last_run(ws) / "records.parquet")
        faces = recs[recs.stage == "faces"]
        assert sorted(faces["item_id"]) == reference.segments       # one record per item
        n_ok = int((faces.status == "ok").sum())
        ds = ws / "datasets" / "sample"
        samples = read_table(ds)
        assert samples["sample_id"].is_unique
        assert _dataset_digest(ds) == reference.digest

        rid2 = trigger(stack.env, "build-dataset/sample", params)   # one worker left
        assert wait_for_run(stack.env, rid2, 1800) == "COMPLETED"
    # run.json's counts are the stage runner's per-item statistics, merged from every worker's file
    cache = json.loads((_last_run(ws) / "run.json").read_text())["cache"]
    assert cache["faces"]["misses"] == 0 and cache["faces"]["hits"] == len(reference.segments) >= n_ok, cache
    assert cache["expressions"]["misses"] == 0, cache
    assert not list(ws.rglob(".tmp-*")), "the killed worker's temporary folder was not cleaned"
    assert _dataset_digest(ws / "datasets" / "sample") == reference.digest


def _overlap(runs: list[dict]) -> int:
    """Most task runs running at the same moment."""
    ev = sorted([(r["start_time"], 1) for r in runs] + [(r["end_time"], -1) for r in runs], key=lambda e: (e[0], e[1]))
    cur = top = 0
    for _, d in ev:
        cur += d
        top = max(top, cur)
    return top


def test_flame53_runs_on_the_gpu_pool_capped_by_the_gpu_tag(stack, sample_dir, tmp_path):
    """`build-on-pools`: ingest + faces and assembly run on the CPU pool, flame53 expressions (EMOCA v2
    encoders, random weights, on CPU here) on `wordsmile-gpu`; the `gpu` tag limit (1) lets one EMOCA
    task run at a time although the thread runner would run several."""
    from extract.expressions.emoca import write_random_emoca_folder

    emoca = tmp_path / "EMOCA_v2_lr_mse_20"
    write_random_emoca_folder(emoca, jaw=True, global_pose=False, seed=0)
    m = tmp_path / "m.yaml"
    m.write_text(f"name: pools\nlicense: CC0-1.0\nsources:\n"
                 f"  - {{id: table, kind: table, path: {sample_dir / 'table' / 'table.csv'}, align: 'off'}}\n")
    ws = tmp_path / "ws"
    overrides = ["expressions.backend=flame53", f"expressions.emoca_path={emoca}", "expressions.device=cpu",
                 "expressions.batch_size=8", "faces.analysis_fps=10", "faces.min_track_frames=6",
                 "assemble.min_frames=5"]
    t0 = time.time()
    rid = trigger(stack.env, "build-on-pools/pools", {"manifest": str(m), "workspace": str(ws), "overrides": overrides})
    state = wait_for_run(stack.env, rid, 1800)
    assert state == "COMPLETED", (stack.dir / "worker-cpu.log").read_text()[-3000:] + \
        (stack.dir / "worker-gpu.log").read_text()[-3000:]
    deps = {d["id"]: f"{d['name']}" for d in api_post(stack.env, "deployments/filter", {})}
    flows = {f["id"]: f["name"] for f in api_post(stack.env, "flows/filter", {})}
    runs = [r for r in api_post(stack.env, "flow_runs/filter", {"limit": 200})
            if r["deployment_id"] and r["start_time"] and pd.Timestamp(r["start_time"]).timestamp() >= t0 - 5]
    where = {(flows[r["flow_id"]], deps[r["deployment_id"]]): r["work_pool_name"] for r in runs}
    assert where[("build-on-pools", "pools")] == POOL
    assert where[("extract-faces", "sample")] == POOL
    assert where[("regress-expressions", "gpu")] == GPU_POOL
    assert where[("assemble-dataset", "sample")] == POOL
    gpu_runs = [t for t in api_post(stack.env, "task_runs/filter", {"task_runs": {"tags": {"all_": ["gpu"]}},
                                                                     "limit": 200})
                if t["start_time"] and pd.Timestamp(t["start_time"]).timestamp() >= t0 - 5]
    assert len(gpu_runs) >= 2 and all(t["state_type"] == "COMPLETED" for t in gpu_runs), gpu_runs
    assert _overlap(gpu_runs) == 1
    info = json.loads((ws / "datasets" / "pools" / "dataset.json").read_text())
    assert info["code_space"] == "flame53" and info["total"]["samples"] >= 1, info


def _child_task_states(pg, rid: str) -> dict:
    """State counts of the task runs of the flow run's subflows (the build's per-item tasks)."""
    out = pg.psql(f"select state_type, count(*) from task_run where flow_run_id in (select id from flow_run "
                  f"where parent_task_run_id in (select id from task_run where flow_run_id = '{rid}')) "
                  f"group by state_type order by 1")
    return {ln.split("|")[0]: int(ln.split("|")[1]) for ln in out.splitlines() if ln}


def test_server_restart_mid_run(stack, manifest, reference, tmp_path):
    """Stop the Prefect server (SIGTERM) while a build runs its faces stage, start it again on the same
    port and PostgreSQL database: the run carries on and completes, the server ends up with the run and
    every task run COMPLETED, the dataset is the reference's (docs/scaling.md, 'Server restart')."""
    ws = tmp_path / "ws"
    rid = trigger(stack.env, "build-dataset/sample", {"manifest": str(manifest), "workspace": str(ws)})
    _wait_for_done(ws, 2, rid, stack.env)
    stack.srv.stop()
    down = time.time()
    done_at_stop = _done(ws)
    time.sleep(5)
    stack.srv.start()
    outage = time.time() - down
    done_at_start = _done(ws)
    state = wait_for_run(stack.env, rid, 1800)
    tasks = _child_task_states(stack.pg, rid)
    print(f"server outage {outage:.1f} s (faces entries {done_at_stop} -> {done_at_start} meanwhile); "
          f"run {rid}: {state}; task runs {tasks}")
    assert state == "COMPLETED", f"outage {outage:.1f} s: " + (stack.dir / "worker-cpu.log").read_text()[-4000:]
    assert done_at_start > done_at_stop, "no work was done while the server was away"
    assert set(tasks) == {"COMPLETED"} and tasks["COMPLETED"] >= 2 * len(reference.segments) - 1, tasks
    assert _dataset_digest(ws / "datasets" / "sample") == reference.digest
