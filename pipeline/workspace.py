"""The workspace: one folder holding everything a build reads and writes (layout in
docs/ARCHITECTURE.md), and the lock that keeps two builds from writing it at once."""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.atomic import clean_stale_tmp

LAYOUT = {
    "sources": "downloads and per-source files (yt-dlp archive, .info.json, captions)",
    "cache": "stage results, content-addressed: cache/STAGE/ab/KEY/ with a DONE marker",
    "datasets": "assembled datasets (EmoAva stage-1 files, Parquet, card, report)",
    "releases": "immutable, checksummed releases NAME-VERSION/",
    "runs": "one folder per run: item records, summary, config and manifest copies, log",
    "state": "state/NAME/: the latest table each stage produced for dataset NAME, so one stage can rerun alone",
}


class WorkspaceLocked(RuntimeError):
    pass


class Workspace:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        for name in LAYOUT:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    sources = property(lambda self: self.root / "sources")
    cache = property(lambda self: self.root / "cache")
    datasets = property(lambda self: self.root / "datasets")
    releases = property(lambda self: self.root / "releases")
    runs = property(lambda self: self.root / "runs")
    state = property(lambda self: self.root / "state")

    @property
    def hash_db(self) -> Path:
        return self.cache / "file_hashes.sqlite"

    def safe_child(self, base: Path, *parts: str) -> Path:
        """Join `parts` under `base`, refusing anything that would escape it (ids from manifests)."""
        p = base.joinpath(*parts).resolve()
        if p != base.resolve() and base.resolve() not in p.parents:
            raise ValueError(f"path {'/'.join(parts)!r} escapes {base}")
        return p

    def new_run_dir(self) -> Path:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        d = self.runs / f"{stamp}-{secrets.token_hex(3)}"
        d.mkdir(parents=True)
        return d

    @contextmanager
    def lock(self, wait: bool | float = False) -> Iterator[None]:
        """Hold the workspace's exclusive lock. `wait=False` fails at once with WorkspaceLocked naming
        the holder; `wait=True` blocks; a number waits up to that many seconds. The lock is an flock,
        so a killed holder releases it automatically."""
        path = self.root / ".lock"
        f = open(path, "a+")
        deadline = None if wait is True else time.monotonic() + (0 if wait is False else float(wait))
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "another process"
                    f.close()
                    raise WorkspaceLocked(
                        f"workspace {self.root} is in use by {holder}; wait for it to finish "
                        f"(or pass --wait) — two builds never write one workspace at once") from None
                time.sleep(0.2)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} since {_dt.datetime.now().isoformat(timespec='seconds')}")
            f.flush()
            # what killed writers left in the folders only builds write (releases are written unlocked)
            for d in (self.cache, self.datasets, self.state, self.runs, self.sources):
                clean_stale_tmp(d)
            yield
        finally:
            try:
                f.truncate(0)
            except OSError:
                pass
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
