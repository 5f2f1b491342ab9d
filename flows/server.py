"""The local Prefect recipe as code: a server on 127.0.0.1, a `process` work pool, deployments from
prefect.yaml, tag concurrency limits, a worker. Used by `wordsmile prefect ...` and by the tests.
Every command is an argument list (never a shell string) and the server binds to loopback only."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
POOL = "wordsmile"          # CPU work
GPU_POOL = "wordsmile-gpu"  # flame53 (EMOCA) expression work: one worker per GPU machine
YOUTUBE_LIMIT = "youtube"  # the flows pass it as sources.youtube.global_limit


def prefect_bin() -> str:
    exe = Path(sys.executable).with_name("prefect")
    return str(exe) if exe.exists() else (shutil.which("prefect") or "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(api_url: str, home: Path | None = None) -> dict:
    env = dict(os.environ)
    env.update(PREFECT_API_URL=api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_UI_ENABLED="false", WORDSMILE_REPO=str(REPO), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if home:
        env["PREFECT_HOME"] = str(home)
    return env


def run(args: list[str], env: dict, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


class PrefectServer:
    """`prefect server start --host 127.0.0.1 --port PORT` as a child process that can be stopped and
    started again on the same port and database (the server-restart fault). `db_url` is a
    PREFECT_API_DATABASE_CONNECTION_URL (e.g. postgresql+asyncpg://...; default: SQLite in PREFECT_HOME)."""

    def __init__(self, port: int | None = None, home: Path | None = None, log: Path | None = None,
                 db_url: str | None = None):
        self.port = port or free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = prefect_env(self.api, home)
        self.server_env = dict(self.env)
        if db_url:
            self.server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = db_url
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> dict:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port",
                                          str(self.port)], env=self.server_env, cwd=REPO, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if self.log:
                out.close()   # the child has its own copy
        deadline = time.time() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"prefect server did not become healthy within {timeout:.0f} s")
            time.sleep(0.5)
        return self.env

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


@contextmanager
def local_server(port: int | None = None, home: Path | None = None, log: Path | None = None,
                 db_url: str | None = None) -> Iterator[dict]:
    """Start `prefect server start --host 127.0.0.1` and yield the environment that talks to it."""
    srv = PrefectServer(port, home, log, db_url)
    try:
        yield srv.start()
    finally:
        srv.stop()


def setup(env: dict, download: int = 2, gpu: int = 1, youtube_per_min: int = 20) -> None:
    """Create the CPU and GPU work pools, deploy every flow in prefect.yaml, set the `download` and `gpu`
    tag concurrency limits and the server-wide `youtube` rate limit (one slot, decaying at per_min/60 s)."""
    for pool in (POOL, GPU_POOL):
        run([prefect_bin(), "work-pool", "create", pool, "--type", "process", "--overwrite"], env)
    run([prefect_bin(), "--no-prompt", "deploy", "--all"], env, timeout=600)
    for tag, n in (("download", download), ("gpu", gpu)):
        run([prefect_bin(), "concurrency-limit", "create", tag, str(n)], env, check=False)
    run([prefect_bin(), "global-concurrency-limit", "create", YOUTUBE_LIMIT, "--limit", "1",
         "--slot-decay-per-second", f"{max(youtube_per_min, 1) / 60.0:.4f}"], env, check=False)


def trigger(env: dict, name: str, params: dict | None = None) -> str | None:
    """`prefect deployment run NAME --param k=v ...`; returns the new flow run's id."""
    import json

    args = [prefect_bin(), "deployment", "run", name]
    for k, v in (params or {}).items():
        args += ["--param", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    out = run(args, env).stdout
    return next((ln.split("UUID:")[1].strip() for ln in out.splitlines() if "UUID:" in ln), None)


def api_get(env: dict, path: str) -> dict:
    """GET PREFECT_API_URL/path as JSON (the REST API; no client process to start)."""
    import json

    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/{path.lstrip('/')}", timeout=30) as r:
        return json.loads(r.read())


def api_post(env: dict, path: str, body: dict) -> list | dict:
    import json

    req = urllib.request.Request(f"{env['PREFECT_API_URL']}/{path.lstrip('/')}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def flow_run_state(env: dict, run_id: str) -> str:
    """The flow run's state type (COMPLETED, FAILED, CRASHED, RUNNING, ...), read through the API."""
    return api_get(env, f"flow_runs/{run_id}")["state_type"]


def run_deployment(env: dict, name: str, params: dict | None = None, timeout: float = 1800) -> str:
    """Trigger a deployment run, serve it with one `worker --run-once`, and return the final state."""
    run_id = trigger(env, name, params)
    run([prefect_bin(), "worker", "start", "--pool", POOL, "--run-once", "--type", "process"], env, timeout=timeout)
    return flow_run_state(env, run_id) if run_id else "UNKNOWN"


def start_worker(env: dict, pool: str = POOL, log: Path | None = None) -> subprocess.Popen:
    """A long-running `prefect worker start --pool POOL` in its own session (stop it with
    flows.cluster.stop_group: it ignores SIGINT while flow runs are in flight)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([prefect_bin(), "worker", "start", "--pool", pool, "--type", "process",
                                 "--name", f"{pool}-{os.getpid()}-{free_port()}"], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()


def wait_for_run(env: dict, run_id: str, timeout: float = 1800, poll: float = 2.0) -> str:
    """Poll the flow run until it reaches a final state; returns that state type."""
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    deadline = time.time() + timeout
    while True:
        try:
            st = flow_run_state(env, run_id)
        except OSError:   # the server is briefly away (restart): keep polling
            st = "UNREACHABLE"
        if st in final:
            return st
        if time.time() > deadline:
            raise TimeoutError(f"flow run {run_id} still {st} after {timeout:.0f} s")
        time.sleep(poll)
