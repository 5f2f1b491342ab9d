"""Atomic writes: every file wordsmile writes goes to a temporary name beside its destination and is
renamed into place only when complete, so a killed writer never leaves a half-written file under the
final name (rename is atomic on POSIX within one filesystem)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask() is process-wide, so reading it later could race with other threads
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest`, on error it is removed.

    The temporary name keeps `dest`'s suffix (or `suffix`) so libraries that pick a format from the
    extension (numpy, pyarrow, ffmpeg) still work."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", suffix=suffix or dest.suffix,
                                dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(dest: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `dest`; on success it is renamed to `dest`.

    With `replace=False` an existing `dest` raises FileExistsError (used by immutable releases)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not replace:
        raise FileExistsError(f"{dest} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if not replace:
            # never os.replace here: a second writer that passed the check above must not swap out the
            # first one's folder. rename() onto a non-empty folder fails (ENOTEMPTY/EEXIST) atomically.
            try:
                os.rename(tmp, dest)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise FileExistsError(f"{dest} already exists (written by another process meanwhile)") from None
                raise
        elif dest.exists():
            old = dest.with_name(TMP_PREFIX + dest.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def write_parquet(dest: str | os.PathLike, df) -> Path:
    """Write a pandas DataFrame as Parquet, atomically and reproducibly (no index, no timestamps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(dest)


def save_npz(dest: str | os.PathLike, **arrays) -> Path:
    """np.savez_compressed, atomically (never pickled: object arrays are refused)."""
    import numpy as np

    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"save_npz: array {k!r} has dtype object (would need pickle)")
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(dest)


def clean_stale_tmp(root: str | os.PathLike) -> int:
    """Remove temporary files/dirs left by killed writers under `root`; returns how many."""
    n = 0
    for p in Path(root).rglob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n
