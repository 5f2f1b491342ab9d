"""A Prefect server on a throwaway PostgreSQL cluster, all on 127.0.0.1, stopped and deleted afterwards.

    python scripts/prefect_postgres.py                      # serve until Ctrl-C (or SIGTERM)
    python scripts/prefect_postgres.py --setup              # also create the pools, deployments, limits
    python scripts/prefect_postgres.py --setup -- prefect deployment ls     # run one command against it

It initdb's a cluster in a temporary folder (as the `postgres` account when run as root: postgres
refuses root), starts it on a free port with password auth, creates the `prefect` database, points
PREFECT_API_DATABASE_CONNECTION_URL at it and starts `prefect server start --host 127.0.0.1`. The
command after `--` runs with PREFECT_API_URL set; its exit status becomes this script's.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.cluster import postgres  # noqa: E402
from flows.server import PrefectServer, setup  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=4200, help="Prefect server port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--home", type=Path, default=None, help="PREFECT_HOME for the server (default: a temp folder)")
    ap.add_argument("--setup", action="store_true", help="create the work pools, deployments and tag limits")
    args = ap.parse_args(own)

    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wordsmile-prefect-home-") as tmp_home, postgres() as pg:
        print(f"postgresql: 127.0.0.1:{pg.port} (database {pg.database}, data in {pg.root})", flush=True)
        srv = PrefectServer(args.port or None, args.home or Path(tmp_home), log=pg.root / "prefect-server.log",
                            db_url=pg.url)
        try:
            env = srv.start()
            print(f"prefect server: {srv.api} on PostgreSQL (log {srv.log})", flush=True)
            if args.setup:
                setup(env)
                print("pools wordsmile + wordsmile-gpu, deployments of prefect.yaml and tag limits created", flush=True)
            if cmd:
                return subprocess.call(cmd, env=env, cwd=REPO)
            print(f"export PREFECT_API_URL={srv.api}\nCtrl-C stops the server and deletes the database", flush=True)
            while not stop.wait(1.0):
                if srv.proc.poll() is not None:
                    print(f"prefect server exited with {srv.proc.returncode}; see {srv.log}", file=sys.stderr)
                    return 1
            return 0
        finally:
            srv.stop()
            print("stopped the server and PostgreSQL; removed the database folder", flush=True)


if __name__ == "__main__":
    sys.exit(main())
