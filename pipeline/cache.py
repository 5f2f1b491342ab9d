"""Content-addressed stage cache.

A result's key is the hash of (stage, code version, stage parameters, input content hashes). A
finished entry is a folder `cache/STAGE/ab/KEY/` holding the result files, `meta.json`,
`record.json` and an empty `DONE` marker written last; the folder is built under a temporary name and
renamed into place, so a killed stage leaves no entry that looks finished. Prefect's own result store
is never relied on: its default cache policy includes the flow-run id and does not resume across runs.
"""
from __future__ import annotations

import datetime as _dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pipeline.atomic import atomic_dir, write_json
from pipeline.hashing import obj_hash

DONE = "DONE"


class StageCache:
    def __init__(self, root: str | Path, stage: str, code_version: str, params: Any = None,
                 force: bool = False):
        """`root` is the workspace's cache folder (or a Workspace). `force=True` treats every entry as
        missing (and replaces it on write): `--force STAGE`."""
        root = getattr(root, "cache", root)
        self.dir = Path(root) / stage
        self.stage = stage
        self.code_version = str(code_version)
        self.params = params if params is not None else {}
        self.params_hash = obj_hash(self.params)
        self.force = force

    def key(self, *inputs: Any) -> str:
        """Key from the inputs' content hashes (and any other defining values, e.g. a time span)."""
        return obj_hash({"stage": self.stage, "code": self.code_version, "params": self.params_hash,
                         "inputs": [str(i) for i in inputs]})[:32]

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def get(self, key: str) -> Path | None:
        p = self.path(key)
        return p if (not self.force) and (p / DONE).exists() else None

    @contextmanager
    def put(self, key: str, meta: dict | None = None) -> Iterator[Path]:
        """Yield a temporary folder to fill; on success it becomes the finished entry for `key`."""
        dest = self.path(key)
        with atomic_dir(dest, replace=True) as tmp:
            yield tmp
            write_json(tmp / "meta.json", {
                "stage": self.stage, "key": key, "code_version": self.code_version,
                "params": self.params, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                **(meta or {})})
            (tmp / DONE).touch()
