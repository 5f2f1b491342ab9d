"""A Dask cluster of separate processes on 127.0.0.1: `dask scheduler` and N `dask worker --nthreads 1`,
each started on its own as on separate machines, with this repo importable. Serves until Ctrl-C.

    python scripts/dask_cluster.py --workers 2 --port 8786
    # then: prefect deployment run build-dataset/sample -p runner=dask -p dask_address=tcp://127.0.0.1:8786
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.cluster import dask_cluster  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (one thread each)")
    ap.add_argument("--port", type=int, default=8786, help="scheduler port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--logs", type=Path, default=None, help="folder for the processes' logs (default: temporary)")
    args = ap.parse_args(argv)
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    with dask_cluster(args.workers, port=args.port or None, logdir=args.logs) as dc:
        print(f"dask scheduler {dc.address} with {args.workers} worker process(es); logs in {dc.logdir}", flush=True)
        print("Ctrl-C stops them all", flush=True)
        while not stop.wait(1.0):
            if dc.scheduler.poll() is not None:
                print("the scheduler exited", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
