"""The processes a multi-machine deployment runs, started here as separate local processes bound to
127.0.0.1: a throwaway PostgreSQL cluster for the Prefect server, and a Dask cluster (`dask scheduler`
plus `dask worker` processes). Used by scripts/, the `scale` tests and benchmarks/bench_scale.py.

Every command is an argument list (never a shell string); each process runs in its own session so it
can be stopped as a group, and everything is stopped and removed when its context exits."""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from flows.server import REPO, free_port

PG_USER = "postgres"   # the system account postgres runs as when we are root (it refuses to run as root)


# ----------------------------------------------------------------------------- processes

def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def _popen(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:   # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ----------------------------------------------------------------------------- PostgreSQL

def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not cands:
        raise RuntimeError(f"PostgreSQL's `{name}` was not found: install Debian's `postgresql` package "
                           "(apt-get install -y postgresql)")
    return str(cands[-1])


def _db_user() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) to run PostgreSQL's binaries with: as root, as the `postgres` account
    through runuser; otherwise as ourselves."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        raise RuntimeError(f"running as root and there is no '{PG_USER}' account to run PostgreSQL as "
                           "(postgres refuses root): install the postgresql package or run as a normal user"
                           ) from None
    return ["runuser", "-u", PG_USER, "--"], pw.pw_uid, pw.pw_gid


@dataclass
class Postgres:
    """A running throwaway cluster; `url` is what PREFECT_API_DATABASE_CONNECTION_URL takes."""
    root: Path
    port: int
    user: str
    password: str
    database: str
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, sql: str) -> str:
        """Run one SQL statement over TCP (as the server's clients do) and return the unaligned output."""
        env = {**os.environ, "PGPASSWORD": self.password}
        p = subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                            "-d", self.database, "-At", "-c", sql], env=env, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr.strip()}")
        return p.stdout.strip()


@contextmanager
def postgres(port: int | None = None, database: str = "prefect") -> Iterator[Postgres]:
    """initdb a new cluster in a temporary folder, start it on 127.0.0.1:PORT (password auth over TCP,
    no other socket reachable by other users), create DATABASE, yield it; stop it and delete the folder
    afterwards."""
    prefix, uid, gid = _db_user()
    root = Path(tempfile.mkdtemp(prefix="wordsmile-pg-"))
    data, sock, log = root / "data", root / "sock", root / "postgres.log"
    sock.mkdir()
    password = secrets.token_hex(16)
    (root / "pw").write_text(password + "\n")
    if uid is not None:
        for p in (root, sock, root / "pw"):
            os.chown(p, uid, gid)
    log.touch()
    if uid is not None:
        os.chown(log, uid, gid)
    port = port or free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    started = False

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run([*prefix, *args], env=env, cwd=root, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({p.returncode}): {p.stdout[-1500:]} "
                               f"{p.stderr[-1500:]} {_tail(log, 1500)}")
        return p

    try:
        # local (socket) connections: trust, but the socket folder is private to the server's account;
        # TCP on 127.0.0.1: scram password, the way a remote server would be reached
        pg(pg_bin("initdb"), "-D", str(data), "-U", "prefect", f"--pwfile={root / 'pw'}", "-E", "UTF8",
           "--auth-local=trust", "--auth-host=scram-sha-256")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c max_connections=200"
        pg(pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o", opts, "start")
        started = True
        pg(pg_bin("createdb"), "-h", str(sock), "-p", str(port), "-U", "prefect", database)
        yield Postgres(root, port, "prefect", password, database, log)
    finally:
        if started:
            try:
                pg(pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- Dask

def dask_bin() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else (shutil.which("dask") or "dask")


def worker_env(extra: dict | None = None) -> dict:
    """What every Dask worker needs: this repo importable, no telemetry, offline models, no progress bars."""
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", WORDSMILE_NO_PROGRESS="1")
    env.update(extra or {})
    return env


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    logdir: Path | None = None
    env: dict = field(default_factory=dict)

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=30) as c:
            return len(c.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, n: int, timeout: float = 180) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as c:
            try:
                c.wait_for_workers(n, timeout=timeout)
            except TimeoutError:
                raise RuntimeError(f"{n} Dask worker(s) did not join {self.address} within {timeout:.0f} s; "
                                   f"logs in {self.logdir}") from None

    def add_worker(self, name: str | None = None) -> subprocess.Popen:
        """Start one `dask worker --nthreads 1` process (a nanny and its worker) against the scheduler."""
        i = len(self.workers)
        name = name or f"w{i}"
        log = self.logdir / f"worker-{name}.log"
        proc = _popen([dask_bin(), "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                       "--name", name, "--host", "127.0.0.1", "--no-dashboard",
                       "--local-directory", str(self.logdir / f"space-{name}")], self.env, log)
        self.workers.append(proc)
        return proc

    def kill_worker(self, i: int) -> None:
        """SIGKILL a worker's whole process group (nanny and worker): a machine that disappears."""
        stop_group(self.workers[i], signal.SIGKILL)


@contextmanager
def dask_cluster(n_workers: int = 2, port: int | None = None, env_extra: dict | None = None,
                 logdir: Path | None = None) -> Iterator[DaskCluster]:
    """`dask scheduler` on 127.0.0.1:PORT and N `dask worker --nthreads 1` processes, each started on
    its own like on separate machines; yields once all workers joined, stops them all afterwards."""
    port = port or free_port()
    own_logdir = logdir is None
    logdir = Path(logdir or tempfile.mkdtemp(prefix="wordsmile-dask-"))
    logdir.mkdir(parents=True, exist_ok=True)
    env = worker_env(env_extra)
    address = f"tcp://127.0.0.1:{port}"
    sched = _popen([dask_bin(), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                    "--no-show"], env, logdir / "scheduler.log")
    cluster = DaskCluster(address, sched, [], logdir, env)
    try:
        deadline = time.time() + 120
        while True:   # the scheduler is up when its port accepts connections
            if sched.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with {sched.returncode}: "
                                   f"{_tail(logdir / 'scheduler.log')}")
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("dask scheduler did not listen within 120 s") from None
                time.sleep(0.3)
        for _ in range(n_workers):
            cluster.add_worker()
        if n_workers:
            cluster.wait_for_workers(n_workers)
        yield cluster
    finally:
        for w in cluster.workers:
            stop_group(w)
        stop_group(sched)
        if own_logdir:
            shutil.rmtree(logdir, ignore_errors=True)
