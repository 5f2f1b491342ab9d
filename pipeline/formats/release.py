"""The release format: SHA256SUMS (writing and parsing), the one restricted unpickler for EmoAva pickles,
and the checks that keep a release folder or archive inside itself (plain files only, no `..`, caps).

    write_sums(root)                      -> root/SHA256SUMS over every regular file under root
    read_sums(root)                       -> ({relpath: sha256}, [problems])
    restricted_load(fileobj, allow=...)   -> unpickle, admitting only the (module, name) globals in `allow`
    load_stage1(path)                     -> a stage-1 list (list[str] or list[float array]), restricted
    plain_files(root)                     -> relative paths of the regular files; ReleaseFormatError on a
                                             symlink, device, fifo or socket anywhere under root
    check_tar_listing(tarfile, ...)       -> problems found from the archive's listing alone (before any
                                             byte is written): escaping or odd members, size and count caps
"""
from __future__ import annotations

import os
import pickle
import re
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

import numpy as np

from pipeline.atomic import write_text
from pipeline.hashing import sha256_file

SUMS = "SHA256SUMS"
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")

# What an EmoAva stage-1 pickle needs: numpy's array reconstruction under numpy 1 and 2 module names,
# and `_codecs.encode`, through which protocol ≤ 2 pickles store array bytes.
STAGE1_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Float64DType"),
    ("_codecs", "encode"),
})

# Limits on an archive's listing; a real release is a few dozen files of at most some GB.
MAX_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 64 << 30
MAX_RATIO = 100          # unpacked / packed bytes; stage-1 floats compress < 4x, a gzip bomb > 1000x
RATIO_FLOOR = 64 << 20   # below this many unpacked bytes the ratio is not checked (tiny releases)


class ReleaseFormatError(ValueError):
    pass


# ---------------------------------------------------------------- restricted unpickling

class _Restricted(pickle.Unpickler):
    def __init__(self, f: BinaryIO, allow: Iterable[tuple[str, str]], what: str,
                 substitute: dict[tuple[str, str], object] | None, encoding: str):
        super().__init__(f, encoding=encoding)
        self._allow = frozenset(allow)
        self._substitute = substitute or {}
        self._what = what

    def find_class(self, module, name):
        if (module, name) in self._substitute:
            return self._substitute[(module, name)]
        if (module, name) in self._allow:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: not allowed in {self._what}")


def restricted_load(fileobj: BinaryIO, allow: Iterable[tuple[str, str]] = STAGE1_GLOBALS,
                    what: str = "a stage-1 pickle", substitute: dict[tuple[str, str], object] | None = None,
                    encoding: str = "ASCII"):
    """Unpickle from `fileobj` admitting only the globals in `allow` ((module, name) pairs): anything
    else (os.system, builtins.eval, ...) raises pickle.UnpicklingError naming it. Builtin containers and
    scalars need no globals. `substitute` maps a global to an inert stand-in of ours (e.g. a chumpy
    class in a FLAME file to a plain holder of its arrays). Call it only on files whose checksum was
    checked (or that the user supplied)."""
    return _Restricted(fileobj, allow, what, substitute, encoding).load()


def load_stage1(path: str | os.PathLike) -> list:
    """One EmoAva stage-1 file: a list of str or of numeric numpy arrays (object arrays refused).
    ReleaseFormatError names the file and the item when it is anything else."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            obj = restricted_load(f)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError, MemoryError) as e:
            raise ReleaseFormatError(f"{path}: refused or unreadable pickle ({e})") from None
    if not isinstance(obj, list):
        raise ReleaseFormatError(f"{path}: expected a list, got {type(obj).__name__}")
    for i, x in enumerate(obj):
        if isinstance(x, np.ndarray):
            if x.dtype == object:
                raise ReleaseFormatError(f"{path}: item {i} is an object array")
        elif not isinstance(x, str):
            raise ReleaseFormatError(f"{path}: item {i} is a {type(x).__name__}, expected str or numpy array")
    return obj


# ---------------------------------------------------------------- the files of a release

def plain_files(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the regular files under `root`, sorted. Never follows a symlink: a link,
    device, fifo or socket anywhere below raises ReleaseFormatError naming it (a release copies bytes
    it owns, never whatever a link points at)."""
    root = Path(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in sorted(dirnames + filenames):
            p = d / name
            mode = p.lstat().st_mode
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise ReleaseFormatError(f"{rel}: is a symbolic link; a release holds regular files only "
                                         f"(copy the file in place of the link)")
            if stat.S_ISREG(mode):
                out.append(rel)
            elif not stat.S_ISDIR(mode):
                raise ReleaseFormatError(f"{rel}: is not a regular file (device, fifo or socket)")
    return sorted(out)


def safe_relpath(rel: str) -> str:
    """A relative path that stays inside its folder: no absolute path, no '..', no empty or '.' parts,
    no backslash or NUL. Returns it normalised; ReleaseFormatError otherwise."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise ReleaseFormatError(f"path {rel!r} is not a plain relative path")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise ReleaseFormatError(f"path {rel!r} escapes its folder (absolute, '..' or empty parts)")
    return p.as_posix()


# ---------------------------------------------------------------- SHA256SUMS

def write_sums(root: str | os.PathLike, files: Iterable[str] | None = None) -> Path:
    """Write root/SHA256SUMS ('<sha256>  <path>' lines, sorted) over `files` (default: every regular
    file under root but SHA256SUMS itself)."""
    root = Path(root)
    rels = sorted(files) if files is not None else [r for r in plain_files(root) if r != SUMS]
    lines = [f"{sha256_file(root / safe_relpath(rel))}  {rel}" for rel in rels]
    return write_text(root / SUMS, "\n".join(lines) + "\n")


def read_sums(root: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """Parse root/SHA256SUMS (`root` is the folder or the SHA256SUMS file itself): ({relpath: sha256},
    problems). Lines that are malformed or name a path outside the folder become problems (with their
    line number), never entries."""
    root = Path(root)
    if root.name == SUMS and root.is_file():
        root = root.parent
    sums: dict[str, str] = {}
    problems: list[str] = []
    try:
        text = (root / SUMS).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return {}, [f"{SUMS}: not UTF-8 text"]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        if not m:
            problems.append(f"{SUMS} line {n}: malformed (expected '<sha256>  <path>')")
            continue
        try:
            rel = safe_relpath(m.group(2))
        except ReleaseFormatError:
            problems.append(f"{SUMS} line {n}: path {m.group(2)!r} escapes the release folder")
            continue
        if rel in sums:
            problems.append(f"{SUMS} line {n}: {rel} is listed twice")
            continue
        sums[rel] = m.group(1)
    return sums, problems


# ---------------------------------------------------------------- archives

def check_tar_listing(tf, packed_bytes: int, max_members: int = MAX_MEMBERS,
                      max_bytes: int = MAX_UNPACKED_BYTES, max_ratio: float = MAX_RATIO) -> tuple[list[str], int]:
    """Problems an archive shows in its listing (an open tarfile.TarFile): members that are absolute,
    climb with '..', or are anything but folders and regular files; more than `max_members` members;
    more than `max_bytes` unpacked, or an unpacked/packed ratio above `max_ratio` (a decompression
    bomb). Reads headers only: nothing is written anywhere. Returns (problems, unpacked bytes)."""
    problems: list[str] = []
    total = n = 0
    for ti in tf:
        n += 1
        if n > max_members:
            return [f"more than {max_members} members: refused before unpacking"], total
        try:
            safe_relpath(ti.name.rstrip("/"))
        except ReleaseFormatError:
            problems.append(f"member {ti.name!r}: absolute or '..' path, refused")
            continue
        if not (ti.isfile() or ti.isdir()):
            problems.append(f"member {ti.name!r}: a link or special file, refused (releases hold regular files)")
            continue
        total += ti.size   # declared in the header: checked before the member's data is decompressed
        if total > max_bytes:
            return problems + [f"unpacks to more than {max_bytes} bytes: refused before unpacking"], total
        if total > RATIO_FLOOR and packed_bytes and total / packed_bytes > max_ratio:
            return problems + [f"unpacks to at least {total} bytes from {packed_bytes} ({total / packed_bytes:.0f}x, "
                               f"limit {max_ratio:g}x): a decompression bomb, refused"], total
    return problems, total


__all__ = ["SUMS", "STAGE1_GLOBALS", "ReleaseFormatError", "restricted_load", "load_stage1", "plain_files",
           "safe_relpath", "write_sums", "read_sums", "check_tar_listing"]
