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
POOL = "wordsmile"
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


@contextmanager
def local_server(port: int | None = None, home: Path | None = None, log: Path | None = None) -> Iterator[dict]:
    """Start `prefect server start --host 127.0.0.1` and yield the environment that talks to it."""
    port = port or free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(api, home)
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}" + (f"; see {log}" if log else ""))
            if time.time() > deadline:
                raise RuntimeError("prefect server did not become healthy within 120 s")
            time.sleep(0.5)
        yield env
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if log:
            out.close()


def setup(env: dict, download: int = 2, gpu: int = 1, youtube_per_min: int = 20) -> None:
    """Create the work pool, deploy every flow in prefect.yaml, set the `download` and `gpu` tag
    concurrency limits and the server-wide `youtube` rate limit (one slot, decaying at per_min/60 s)."""
    run([prefect_bin(), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
    run([prefect_bin(), "--no-prompt", "deploy", "--all"], env, timeout=600)
    for tag, n in (("download", download), ("gpu", gpu)):
        run([prefect_bin(), "concurrency-limit", "create", tag, str(n)], env, check=False)
    run([prefect_bin(), "global-concurrency-limit", "create", YOUTUBE_LIMIT, "--limit", "1",
         "--slot-decay-per-second", f"{max(youtube_per_min, 1) / 60.0:.4f}"], env, check=False)


def run_deployment(env: dict, name: str, params: dict | None = None, timeout: float = 1800) -> str:
    """Trigger a deployment run, serve it with one `worker --run-once`, and return the final state."""
    import json

    args = [prefect_bin(), "deployment", "run", name]
    for k, v in (params or {}).items():
        args += ["--param", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    out = run(args, env).stdout
    run_id = next((ln.split("UUID:")[1].strip() for ln in out.splitlines() if "UUID:" in ln), None)
    run([prefect_bin(), "worker", "start", "--pool", POOL, "--run-once", "--type", "process"], env, timeout=timeout)
    if not run_id:
        return "UNKNOWN"
    st = run([sys.executable, "-c",
              "import sys,asyncio\nfrom prefect.client.orchestration import get_client\n"
              "async def m():\n  async with get_client() as c:\n"
              "    r = await c.read_flow_run(sys.argv[1]); print(r.state.type.value)\nasyncio.run(m())", run_id], env)
    return st.stdout.strip().splitlines()[-1]
