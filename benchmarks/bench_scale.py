"""Scale-out figures (issue 18), all from one run, with the processes a cluster runs on 127.0.0.1:

    python benchmarks/bench_scale.py                      # sample media in ./sample_data (generated if missing)
    python benchmarks/bench_scale.py --json out.json --api-runs 100

  dask 1 vs 2   items/min of `build-dataset` (runner=dask, dask_address) on a Prefect server backed by
                PostgreSQL, with a `dask scheduler` and 1 or 2 `dask worker --nthreads 1` processes, the
                same workload (the sample manifest: ingest, 22 faces + 22 expressions items, assembly)
                into a fresh workspace each time. Items = faces + expressions task runs. Also the CPU
                seconds the worker processes used, so contention from other work on the machine shows.
  PG vs SQLite  the same build with the thread runner against a server on PostgreSQL and one on SQLite,
                and an API microbenchmark: N flow runs created and moved PENDING -> RUNNING -> COMPLETED
                through the Python client (request latency of the server + its database).

Each build runs in a fresh Python process (`_one` below) that times the flow call itself, so Python
start-up and imports are not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _one(args: argparse.Namespace) -> None:
    """Run build-dataset once in this process (PREFECT_API_URL from the environment); print JSON."""
    from flows.flows import build_dataset

    t = time.perf_counter()
    out = build_dataset(manifest=args.manifest, workspace=args.ws, runner=args.runner, dask_address=args.address)
    dt = time.perf_counter() - t
    counts = out["counts"]
    items = sum(v for k, v in counts.items() if k.split("/")[0] in ("faces", "expressions"))
    print("RESULT " + json.dumps({"seconds": dt, "items": items, "counts": counts}), flush=True)


def _api(args: argparse.Namespace) -> None:
    """Create N flow runs and move each through PENDING -> RUNNING -> COMPLETED; print requests/s."""
    import asyncio

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Pending, Running

    @flow(name="bench-api")
    def bench_api():
        pass

    async def main():
        async with get_client() as c:
            t = time.perf_counter()
            for i in range(args.n):
                fr = await c.create_flow_run(bench_api, name=f"b{i}", state=Pending())
                await c.set_flow_run_state(fr.id, Running())
                await c.set_flow_run_state(fr.id, Completed())
            dt = time.perf_counter() - t
            print("RESULT " + json.dumps({"seconds": dt, "requests": 3 * args.n}), flush=True)

    asyncio.run(main())


def _sub(mode: list[str], env: dict, timeout: float = 3600) -> dict:
    p = subprocess.run([sys.executable, __file__, *mode], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    line = next((ln for ln in p.stdout.splitlines()[::-1] if ln.startswith("RESULT ")), None)
    if p.returncode != 0 or not line:
        raise RuntimeError(f"{mode[0]} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _tree_cpu(pids: list[int]) -> float:
    """user + system seconds of these processes and their descendants, including finished children
    they waited for (ffmpeg decoders)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def markdown(res: dict, speech_s: float, utt_s: float = 3.0, cores: int = 32, eff: float = 0.9) -> str:
    """The figures as docs/scaling.md's tables, and the sizing derived from them (assumptions named)."""
    d1, d2, r = res["dask1"], res["dask2"], res["ratios"]
    rows = [
        "| what | figure |", "| --- | --- |",
        f"| Dask, 1 worker process | {d1['items_per_min']:.1f} items/min ({d1['items']} items in {d1['seconds']:.0f} s); "
        f"{d1['items_per_cpu_min']:.1f} items per worker CPU-minute |",
        f"| Dask, 2 worker processes | {d2['items_per_min']:.1f} items/min ({d2['seconds']:.0f} s); "
        f"{d2['items_per_cpu_min']:.1f} items per worker CPU-minute |",
        f"| 2 vs 1 worker processes | **{r['dask2_over_dask1_items_per_min']:.2f}×** items/min |",
        f"| build, thread runner, server on PostgreSQL vs SQLite | {res['pg_thread']['seconds']:.0f} s vs "
        f"{res['sqlite_thread']['seconds']:.0f} s: **{r['pg_over_sqlite_build_seconds']:.2f}×** |",
        f"| API: flow run create + 2 state changes, PostgreSQL vs SQLite | {res['pg_api']['ms_per_request']:.1f} vs "
        f"{res['sqlite_api']['ms_per_request']:.1f} ms/request: **{r['pg_over_sqlite_api_seconds']:.2f}×** |",
        f"| load average before / after | {res['load_before'][0]:.1f} / {res['load_after'][0]:.1f} on {res['cpus']} cores |",
    ]
    # sizing: CPU seconds of worker time per second of speech (faces + arkit52 expressions), from dask1
    cpu_per_speech_s = d1["worker_cpu_s"] / speech_s
    out = ["\n".join(rows), "",
           f"Basis: {d1['worker_cpu_s']:.0f} worker CPU-seconds for the sample's {speech_s:.1f} s of speech = "
           f"**{cpu_per_speech_s:.1f} CPU-s per second of speech** (faces + arkit52 expressions, Prefect task "
           f"overhead included); assumed: {utt_s:g} s per utterance, {cores}-core CPU machines running one "
           f"worker process per core at {eff:.0%} efficiency.", "",
           "| utterances | speech | CPU core-hours | one machine | machines for 24 h |", "| --- | --- | --- | --- | --- |"]
    for n in (15_000, 1_000_000):
        core_h = n * utt_s * cpu_per_speech_s / 3600
        wall_h = core_h / (cores * eff)
        out.append(f"| {n:,} | {n * utt_s / 3600:,.1f} h | {core_h:,.0f} | {wall_h:,.1f} h | {max(1, -(-wall_h // 24)):.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description="scale-out figures (see the module docstring)")
    ap.add_argument("--sample", type=Path, default=ROOT / "sample_data")
    ap.add_argument("--api-runs", type=int, default=100)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from flows.cluster import dask_cluster, postgres
    from flows.server import PrefectServer

    if not (args.sample / "table" / "table.csv").exists():
        from testdata.samplegen import make_sample

        make_sample(args.sample)
    tmp = Path(tempfile.mkdtemp(prefix="wordsmile-bench-scale-"))
    manifest = tmp / "sample.yaml"
    manifest.write_text((ROOT / "manifests" / "sample.yaml").read_text().replace("../sample_data", str(args.sample)))
    res: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}

    def build(env: dict, name: str, runner: str, address: str = "") -> dict:
        r = _sub(["_one", "--manifest", str(manifest), "--ws", str(tmp / f"ws-{name}"), "--runner", runner,
                  "--address", address], env)
        r["items_per_min"] = 60.0 * r["items"] / r["seconds"]
        print(f"{name}: {r['items']} items in {r['seconds']:.1f} s = {r['items_per_min']:.1f} items/min", flush=True)
        return r

    with postgres() as pg:
        srv = PrefectServer(home=tmp / "home-pg", log=tmp / "server-pg.log", db_url=pg.url)
        env = srv.start()
        try:
            for n in (1, 2):
                with dask_cluster(n, env_extra={"PREFECT_API_URL": env["PREFECT_API_URL"]}, logdir=tmp / f"dask{n}") as dc:
                    pids = [w.pid for w in dc.workers]
                    c0 = _tree_cpu(pids)
                    r = build(env, f"dask{n}", "dask", dc.address)
                    r["worker_cpu_s"] = _tree_cpu(pids) - c0
                    r["items_per_cpu_min"] = 60.0 * r["items"] / max(r["worker_cpu_s"], 1e-9)
                    res[f"dask{n}"] = r
            res["pg_thread"] = build(env, "pg_thread", "thread")
            res["pg_api"] = _sub(["_api", "--n", str(args.api_runs)], env)
        finally:
            srv.stop()
    srv = PrefectServer(home=tmp / "home-sqlite", log=tmp / "server-sqlite.log")
    env = srv.start()
    try:
        res["sqlite_thread"] = build(env, "sqlite_thread", "thread")
        res["sqlite_api"] = _sub(["_api", "--n", str(args.api_runs)], env)
    finally:
        srv.stop()
    res["load_after"] = os.getloadavg()

    d1, d2 = res["dask1"], res["dask2"]
    res["ratios"] = {
        "dask2_over_dask1_items_per_min": d2["items_per_min"] / d1["items_per_min"],
        "pg_over_sqlite_build_seconds": res["pg_thread"]["seconds"] / res["sqlite_thread"]["seconds"],
        "pg_over_sqlite_api_seconds": res["pg_api"]["seconds"] / res["sqlite_api"]["seconds"],
    }
    for k in ("pg_api", "sqlite_api"):
        res[k]["ms_per_request"] = 1000.0 * res[k]["seconds"] / res[k]["requests"]
    print(json.dumps(res, indent=2))
    import pandas as pd

    segs = pd.read_parquet(tmp / "ws-dask1" / "state" / "sample" / "ingest.parquet")
    res["speech_s"] = float((segs["end"] - segs["start"]).sum())
    print(markdown(res, res["speech_s"]))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_one", "_api"):
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--manifest")
        ap.add_argument("--ws")
        ap.add_argument("--runner", default="thread")
        ap.add_argument("--address", default="")
        ap.add_argument("--n", type=int, default=100)
        a = ap.parse_args()
        (_one if a.mode == "_one" else _api)(a)
    else:
        main()
