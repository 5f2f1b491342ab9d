"""Releases: immutable, checksummed copies of a dataset folder (docs/datasets.md).

`release` writes WORKSPACE/releases/NAME-VERSION/ (never overwritten) with the dataset files, SHA256SUMS,
provenance and licence notices, optionally rewriting the dataset without opted-out samples. `verify`
checks hashes, then schema and the EmoAva layout; only after the hashes match does it unpickle the stage-1
files, and then only through the release format's restricted unpickler (pipeline/formats/release.py:
lists, strings and numpy arrays, nothing else). A dataset holding a symlink or special file, or whose
dataset.json names unsafe paths, is refused; an archive is checked from its listing before unpacking.
`publish` copies a verified release to any fsspec URL and checks the copy by reading it back."""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.atomic import TMP_PREFIX, atomic_dir, atomic_path, clean_stale_tmp, write_json, write_text
from pipeline.formats.dataset import SPLITS
from pipeline.formats.release import (MAX_MEMBERS, MAX_RATIO, MAX_UNPACKED_BYTES, SUMS, ReleaseFormatError,
                                      check_tar_listing, load_stage1, plain_files, read_sums, safe_relpath,
                                      write_sums)
from pipeline.hashing import sha256_file
from pipeline.manifest import SAFE_ID, check_safe_id

RELEASE_CODE_VERSION = "1"
REQUIRED_INFO = ("name", "code_space", "D", "dims", "fps", "counts", "config_hash", "versions", "columns")


class ReleaseError(RuntimeError):
    pass


def safe_load_pickle(path: str | os.PathLike) -> list:
    """Unpickle a stage-1 file allowing only list / str / numpy ndarray reconstruction (the release
    format's restricted unpickler). Call it only on files whose hash `verify` has checked."""
    try:
        return load_stage1(path)
    except ReleaseFormatError as e:
        raise ReleaseError(str(e)) from None


def _files(root: Path) -> list[str]:
    """Regular files under root; a symlink or special file anywhere is a ReleaseError."""
    try:
        return plain_files(root)
    except ReleaseFormatError as e:
        raise ReleaseError(f"{root}/{e}") from None


# ---------------------------------------------------------------- verify

def verify(path: str | os.PathLike, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_UNPACKED_BYTES,
           max_ratio: float = MAX_RATIO) -> list[str]:
    """Check a release folder (or its .tar.gz): every file's SHA-256 against SHA256SUMS, no unlisted files,
    then dataset.json, the EmoAva stage-1 layout and the Parquet splits. Returns the problems, each naming
    the file; an empty list means the release is intact. An archive is checked from its listing first
    (members, paths, unpacked size against the caps and the free space) before anything is unpacked."""
    p = Path(path)
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
        return _verify_archive(p, max_members, max_bytes, max_ratio)
    if not p.is_dir():
        return [f"{p}: not a folder or .tar.gz"]
    if not (p / SUMS).is_file():
        return [f"{SUMS} is missing: {p} is not a release folder (make one with `wordsmile release`)"]
    sums, problems = read_sums(p)
    try:
        present = set(plain_files(p)) - {SUMS}
    except ReleaseFormatError as e:
        return problems + [str(e), "contents not checked further: releases hold regular files only"]
    for rel in sorted(sums):
        f = p / rel
        if f.is_symlink():
            problems.append(f"{rel}: is a symbolic link (releases hold plain files only)")
        elif not f.is_file():
            problems.append(f"{rel}: missing (listed in {SUMS})")
        else:
            got = sha256_file(f)
            if got != sums[rel]:
                problems.append(f"{rel}: hash mismatch (expected {sums[rel][:12]}…, got {got[:12]}…)")
    for rel in sorted(present - set(sums)):
        problems.append(f"{rel}: not listed in {SUMS} (added after the release was made)")
    if problems:
        # never unpickle files that failed their checksum: report and stop here
        return problems + ["contents not checked further: fix the checksum problems first"]
    return check_layout(p)


def _verify_archive(p: Path, max_members: int, max_bytes: int, max_ratio: float) -> list[str]:
    import zlib

    bad = (tarfile.TarError, EOFError, OSError, zlib.error)
    try:
        tf = tarfile.open(p, "r:gz")
    except bad as e:
        return [f"{p.name}: not a gzip-compressed tar archive ({e}); `wordsmile release --tar` writes one"]
    with tf:
        try:
            problems, total = check_tar_listing(tf, p.stat().st_size, max_members, max_bytes, max_ratio)
        except bad as e:
            return [f"{p.name}: truncated or corrupt archive ({type(e).__name__}: {e})"]
        if problems:
            return [f"{p.name}: {x}" for x in problems]
        with tempfile.TemporaryDirectory(prefix="wordsmile-verify-") as td:
            free = shutil.disk_usage(td).free
            if total > free:
                return [f"{p.name}: unpacks to {total} bytes but {td} has only {free} free: set TMPDIR to a "
                        f"folder with room, or verify the unpacked folder"]
            try:
                tf.extractall(td, filter="data")
            except bad as e:
                return [f"{p.name}: cannot unpack ({type(e).__name__}: {e})"]
            tops = [d for d in Path(td).iterdir()]
            if len(tops) != 1 or not tops[0].is_dir():
                return [f"{p.name}: expected one top-level folder, found {sorted(t.name for t in tops)}"]
            return [f"{p.name}: {x}" for x in verify(tops[0])]


def check_layout(d: Path) -> list[str]:
    """Schema and EmoAva layout of a dataset folder (call on verified files only: it unpickles)."""

    problems: list[str] = []
    try:
        info = json.loads((d / "dataset.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ["dataset.json: missing"]
    except ValueError as e:
        return [f"dataset.json: not valid JSON ({e})"]
    missing = [k for k in REQUIRED_INFO if k not in info]
    if missing:
        return [f"dataset.json: field(s) {missing} missing"]
    D = info["D"]
    if D != len(info["dims"]):
        problems.append(f"dataset.json: D = {D} but dims has {len(info['dims'])} names")
    max_frames = info.get("assemble_config", {}).get("max_frames")
    texts_by_split: dict[str, list[str]] = {}
    nframes_by_split: dict[str, list[int]] = {}
    for s in SPLITS:
        tp, ep = d / f"{s}_stage1_text.pkl", d / f"{s}_stage1_exps.pkl"
        if not tp.is_file() or not ep.is_file():
            problems.append(f"{(tp if not tp.is_file() else ep).name}: missing (EmoAva needs both stage-1 files per split)")
            continue
        try:
            texts, exps = safe_load_pickle(tp), safe_load_pickle(ep)
        except ReleaseError as e:
            problems.append(str(e).replace(str(d) + "/", ""))
            continue
        if not all(isinstance(t, str) for t in texts):
            problems.append(f"{tp.name}: not a list of str")
        if len(texts) != len(exps):
            problems.append(f"{tp.name} has {len(texts)} texts but {ep.name} has {len(exps)} sequences")
        for i, e in enumerate(exps):
            if not isinstance(e, np.ndarray) or e.dtype != np.float32 or e.ndim != 2 or e.shape[1] != D:
                problems.append(f"{ep.name}: item {i} is {getattr(e, 'dtype', type(e).__name__)} "
                                f"{getattr(e, 'shape', '')}, expected float32 (T, {D})")
                break
            if max_frames and e.shape[0] > max_frames:
                problems.append(f"{ep.name}: item {i} has {e.shape[0]} frames > max_frames {max_frames}")
                break
            if not np.isfinite(e).all():
                problems.append(f"{ep.name}: item {i} has non-finite values")
                break
        want = info["counts"].get(s, {}).get("samples")
        if want != len(texts):
            problems.append(f"{tp.name}: {len(texts)} samples but dataset.json counts say {want}")
        texts_by_split[s] = list(texts)
        nframes_by_split[s] = [int(e.shape[0]) if isinstance(e, np.ndarray) and e.ndim == 2 else -1 for e in exps]
    from pipeline.formats import FormatError
    from pipeline.formats.dataset import STAT_FILES, read_train_stat, stat_problems

    for name in STAT_FILES:
        try:
            a = read_train_stat(d, name, D)
        except FormatError as e:
            problems.append(f"{name}: {e.problem}")
            continue
        problems += [f"{name}: {x}" for x in stat_problems(name, a)]
    from pipeline.formats.dataset import CORE_COLUMNS, DATA_FILES, read_table

    try:
        df = read_table(d)
    except (FileNotFoundError, ValueError) as e:
        problems.append(str(e).replace(str(d) + "/", ""))
        df = None
    if df is not None:
        pq_name = "Parquet (" + ", ".join(DATA_FILES.values()) + ")"
        lack = [c for c in CORE_COLUMNS if c not in df.columns]
        if lack:
            problems.append(f"{pq_name}: column(s) {lack} missing")
        elif list(df.columns) != list(info["columns"]):
            problems.append(f"{pq_name}: columns differ from dataset.json 'columns'")
        else:
            if df["sample_id"].duplicated().any():
                problems.append(f"{pq_name}: duplicate sample_id values")
            for s in SPLITS:
                if (d / DATA_FILES[s]).is_file():
                    got = read_table(d, [s], ["split"])["split"]
                    if (got != s).any():
                        problems.append(f"{DATA_FILES[s]}: rows whose split is not {s!r}")
                part = df[df["split"] == s]
                if s in texts_by_split and list(part["text"]) != texts_by_split[s]:
                    problems.append(f"{DATA_FILES[s]}: texts differ from {s}_stage1_text.pkl")
                if s in nframes_by_split and list(part["n_frames"].astype(int)) != nframes_by_split[s]:
                    problems.append(f"{DATA_FILES[s]}: n_frames differ from {s}_stage1_exps.pkl")
            if df["split"].isin(SPLITS).sum() != len(df):
                problems.append(f"{pq_name}: rows with a split other than train/dev/test")
    for name in ("README.md", "report.html"):
        if not (d / name).is_file():
            problems.append(f"{name}: missing")
    if (d / "report.html").is_file():
        for src in re.findall(r"src='([^']+)'", (d / "report.html").read_text(encoding="utf-8")):
            try:
                safe_relpath(src)
            except ReleaseFormatError:
                problems.append(f"report.html: image path {src!r} points outside the release")
                continue
            if not (d / src).is_file():
                problems.append(f"report.html: image {src} missing")
    return problems


def read_stage1(release_dir: str | os.PathLike, split: str) -> tuple[list[str], list[np.ndarray]]:
    """EmoAva stage-1 lists of a release, verified first (our readers never unpickle unchecked files)."""
    problems = verify(release_dir)
    if problems:
        raise ReleaseError(f"{release_dir} failed verification:\n  " + "\n  ".join(problems))
    d = Path(release_dir)
    return safe_load_pickle(d / f"{split}_stage1_text.pkl"), safe_load_pickle(d / f"{split}_stage1_exps.pkl")


# ---------------------------------------------------------------- release

def read_ids(path: str | os.PathLike) -> list[str]:
    """Sample ids, one per line; blank lines and '#' comments ignored."""
    p = Path(path)
    if not p.is_file():
        raise ReleaseError(f"exclusion file {p} does not exist")
    ids = []
    for line in p.read_text(encoding="utf-8").splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            ids.append(s)
    return ids


def _resolve_dataset(dataset_dir, ws) -> Path:
    d = Path(dataset_dir)
    if not d.is_dir() and ws is not None and SAFE_ID.match(str(dataset_dir)) and (ws.datasets / str(dataset_dir)).is_dir():
        d = ws.datasets / str(dataset_dir)
    if not (d / "dataset.json").is_file():
        raise ReleaseError(f"{d} is not a dataset folder (no dataset.json): build one with `wordsmile build`")
    return d


def _checked_info(src: Path) -> tuple[dict, list[str]]:
    """dataset.json and the dataset's regular files, after refusing anything that would make a release
    copy bytes from outside the folder or write outside its own: symlinks and special files anywhere,
    a `name` or `sources[].source_id` that is not a safe id, `extra_files` that are not plain files of
    the folder. Names from the file only ever become one path component, validated here."""
    files = _files(src)
    try:
        info = json.loads((src / "dataset.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ReleaseError(f"{src / 'dataset.json'}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise ReleaseError(f"{src / 'dataset.json'}: not a JSON object")

    def safe(value, field):
        try:
            return check_safe_id(value if isinstance(value, str) else "")
        except ValueError as e:
            raise ReleaseError(f"{src / 'dataset.json'}: field {field} = {value!r}: {e}") from None

    safe(info.get("name"), "'name'")
    for i, s in enumerate(info.get("sources") or []):
        safe(s.get("source_id") if isinstance(s, dict) else None, f"'sources[{i}].source_id'")
    for i, name in enumerate(info.get("extra_files") or []):
        try:
            rel = safe_relpath(name)
        except ReleaseFormatError as e:
            raise ReleaseError(f"{src / 'dataset.json'}: field 'extra_files[{i}]': {e}") from None
        if rel not in files:
            raise ReleaseError(f"{src / 'dataset.json'}: field 'extra_files[{i}]': {rel!r} is not a file of {src}")
    return info, files


def _licence_notices(out: Path, info: dict) -> None:
    from dataset.assemble.card import SOURCE_CITATIONS

    for s in info.get("sources", []):
        text = (f"Source: {s['source_id']} ({s['kind']})\nLicence: {', '.join(s['license'])}\n"
                f"Samples in this release: {s['samples']} from {s['videos']} videos\n\n"
                f"{SOURCE_CITATIONS.get(s['kind'], '')}\n\n"
                "The expression codes are derived from the source media; rights in the original media remain "
                "with their holders. Per-sample provenance (url, title, uploader, license) is in "
                "data/*.parquet. To request removal of a sample, send its sample_id to the publisher: "
                "new versions are made with `wordsmile release --exclude`.\n")
        write_text(out / "licenses" / f"{check_safe_id(s['source_id'])}.txt", text)


def _rewrite_without(src: Path, out: Path, info: dict, files: list[str], ids: list[str]) -> dict:
    """Rewrite the dataset into `out` without the listed sample ids (statistics, card and report too)."""
    from dataset.assemble import card, report
    from pipeline.formats.dataset import read_samples, write_dataset
    from pipeline.config.assemble import AssembleConfig

    df = read_samples(src)
    listed = set(ids)
    gone = df["sample_id"].isin(listed)
    removed = sorted(df.loc[gone, "sample_id"])
    base = {k: v for k, v in info.items() if k not in (
        "format_version", "D", "fps", "fps_values", "counts", "total", "stats", "columns", "pickle_protocol")}
    for f in base.get("funnel_by_source", []):
        f["kept"] = int((~gone & (df["source_id"] == f["source_id"])).sum())
    base["funnel"] = list(info.get("funnel", [])) + (
        [{"stage": "release", "status": "skipped", "reason": "filter.excluded", "count": len(removed)}]
        if removed else [])
    base["warnings"] = [w for w in info.get("warnings", []) if not w.startswith("the train split is empty")]
    for s in base.get("sources", []):
        part = df[~gone & (df["source_id"] == s["source_id"])]
        s["samples"], s["videos"] = int(len(part)), int(part["video_id"].nunique())
    base["sources"] = [s for s in base.get("sources", []) if s["samples"] > 0]
    base["excluded"] = {"listed": len(listed), "removed": len(removed)}
    cfg = AssembleConfig(**info.get("assemble_config", {}))
    meta = write_dataset(out, df[~gone].reset_index(drop=True), base, info.get("pickle_protocol", cfg.pickle_protocol),
                         info.get("stats", {}).get("std_floor", cfg.std_floor))
    for rel in [safe_relpath(x) for x in info.get("extra_files", [])] + [f for f in files if f.startswith("provenance/")]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out / rel, follow_symlinks=False)
    write_json(out / "provenance" / "excluded.json",
               {"listed": sorted(listed), "removed": removed, "not_found": sorted(listed - set(removed))})
    run = {}
    if (src / "provenance" / "run.json").is_file():
        run = json.loads((src / "provenance" / "run.json").read_text(encoding="utf-8"))
    report.write_report(out, meta, df[~gone].reset_index(drop=True), cfg, media=None, thumbs_from=src, run=run)
    card.write_card(out, meta, df[~gone].reset_index(drop=True))
    return meta


def _refuse_empty(info: dict, src: Path, after: str = "") -> None:
    """An empty release helps nobody and looks like a success: refuse it, saying where the reasons are."""
    if int(info.get("total", {}).get("samples", 0)) > 0:
        return
    why = "; ".join(w for w in info.get("warnings", []) if not w.startswith("the train split is empty"))
    raise ReleaseError(f"dataset {info.get('name')} has no samples{' after ' + after if after else ''}: nothing to "
                       f"release" + (f" ({why})" if why else "") + f"; see {src / 'report.html'} for the funnel")


def _deterministic_tar(folder: Path, dest: Path, mtime: int) -> Path:
    with atomic_path(dest, suffix=".tar.gz") as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for rel in [""] + _files(folder):
                p = folder / rel if rel else folder
                ti = tf.gettarinfo(str(p), arcname=f"{folder.name}/{rel}".rstrip("/"))
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = mtime
                ti.mode = 0o755 if p.is_dir() else 0o444
                if p.is_file():
                    with open(p, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return dest


@contextmanager
def _releases_lock(ws, wait_s: float = 600.0):
    """One release writer per workspace at a time (builds do not take it: releases are written beside
    them). Under it, temporaries that killed release writers left in releases/ are removed."""
    ws.releases.mkdir(parents=True, exist_ok=True)
    f = open(ws.releases / ".lock", "a+")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ReleaseError(f"{ws.releases} is being written by another release for over "
                                       f"{wait_s:.0f} s; rerun when it has finished") from None
                time.sleep(0.2)
        clean_stale_tmp(ws.releases)
        yield
    finally:
        f.close()   # closing the file releases the flock


def _io_error(e: OSError, dest: Path) -> ReleaseError:
    where = e.filename or dest
    if e.errno == errno.ENOSPC:
        return ReleaseError(f"no space left on device while writing {where}; nothing half-written was kept: "
                            f"free some space and rerun")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReleaseError(f"cannot write {where} ({os.strerror(e.errno)}): choose a writable workspace "
                            f"with --workspace")
    return ReleaseError(f"{where}: {e.strerror or e}")


def release(dataset_dir, ws, version: str, exclude: str | os.PathLike | None = None, tar: bool = False) -> Path:
    """Write the immutable release `ws.releases / NAME-VERSION` (FileExistsError if it exists) and verify
    it before it appears under its final name. With `exclude`, the listed sample ids are removed and the
    stage-1 files, statistics, Parquet, card and report are rewritten without them.

    With `tar`, also NAME-VERSION.tar.gz; when the folder exists but its archive does not (a killed or
    failed --tar run), the archive is written from the verified folder. Disk errors become ReleaseError
    naming the file; whatever was half-written is removed."""
    check_safe_id(version)
    src = _resolve_dataset(dataset_dir, ws)
    info, files = _checked_info(src)
    name = info["name"]
    _refuse_empty(info, src)
    dest = ws.releases / f"{name}-{version}"
    archive = ws.releases / f"{dest.name}.tar.gz"
    ids = read_ids(exclude) if exclude else None
    try:
        with _releases_lock(ws):
            if dest.exists():
                if tar and not archive.exists():
                    return _resume_tar(dest, archive)
                raise FileExistsError(f"release {dest} already exists: releases are immutable, choose a new --version")
            created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
            _write_release(src, dest, info, files, ids, name, version, created)
            if tar:
                _deterministic_tar(dest, archive, int(created.timestamp()))
    except OSError as e:
        if isinstance(e, FileExistsError):
            raise
        raise _io_error(e, dest) from None
    return dest


def _write_release(src, dest, info, files, ids, name, version, created) -> None:
    with atomic_dir(dest, replace=False) as tmp:
        if ids is not None:
            info = _rewrite_without(src, tmp, info, files, ids)
            _refuse_empty(info, src, after=f"excluding the {info['excluded']['removed']} listed samples")
        else:
            for rel in files:
                if any(part.startswith(TMP_PREFIX) for part in rel.split("/")):
                    continue
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, tmp / rel, follow_symlinks=False)
        _licence_notices(tmp, info)
        from pipeline.formats.dataset import software_versions
        write_json(tmp / "provenance" / "release.json", {
            "name": name, "version": version, "created": created.isoformat(),
            "dataset": str(src), "dataset_json_sha256": sha256_file(src / "dataset.json"),
            "excluded": info.get("excluded"), "software": software_versions(),
            "release_code_version": RELEASE_CODE_VERSION})
        write_sums(tmp)
        problems = verify(tmp)
        if problems:
            raise ReleaseError(f"release {name}-{version} failed its own verification:\n  " + "\n  ".join(problems))
        # read-only files: a release is never edited in place (folders stay listable for everyone)
        for p in [tmp, *tmp.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _resume_tar(dest: Path, archive: Path) -> Path:
    """The archive of an existing release (its --tar run was killed or hit a full disk): written only
    from a folder that verifies, with the mtime of its release.json, so it equals an uninterrupted run's."""
    problems = verify(dest)
    if problems:
        raise ReleaseError(f"{dest} exists but fails verification, so no archive is made of it:\n  "
                           + "\n  ".join(problems))
    created = json.loads((dest / "provenance" / "release.json").read_text(encoding="utf-8"))["created"]
    _deterministic_tar(dest, archive, int(_dt.datetime.fromisoformat(created).timestamp()))
    return dest


# ---------------------------------------------------------------- publish

def _local_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    return None if "://" in url else Path(url)


def publish(path: str | os.PathLike, url: str) -> str:
    """Copy a verified release folder under `url` (any fsspec URL: a local folder, file://, s3://, gs://,
    hf://… with its backend installed) as URL/NAME-VERSION/, SHA256SUMS last, then read every file back
    and compare its hash. A verified NAME-VERSION.tar.gz is published as the one file URL/NAME-VERSION.tar.gz.
    Refuses an unverified release, an existing destination and a destination inside the release.
    Returns the URL."""

    p = Path(path)
    local = _local_path(url)
    if local is not None and p.is_dir():
        inside = local.expanduser().resolve()
        if inside == p.resolve() or p.resolve() in inside.parents:
            raise ReleaseError(f"{url} is inside the release {p}: publishing there would change the release; "
                               f"choose a destination outside it")
    problems = verify(p)
    if problems:
        raise ReleaseError(f"{p} failed verification, not publishing:\n  " + "\n  ".join(problems))
    if url.startswith("hf://"):
        _hub_ready(url)
    try:
        return _upload(p, url)
    except (ReleaseError, FileExistsError):
        raise
    except Exception as e:  # noqa: BLE001 - any backend's network/auth error becomes one clear line
        raise ReleaseError(f"publishing to {url} failed: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    hint = " (is the network reachable?)" if any(k in type(e).__name__ for k in ("Connect", "Timeout")) else ""
    return (f"{type(e).__name__}: {msg[:300]}" if msg else type(e).__name__) + hint


def _hub_ready(url: str) -> None:
    """What the Hugging Face client needs before its first network call, checked with a clear message."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ReleaseError(f"cannot publish to {url}: HF_HUB_OFFLINE is set in the environment; unset it "
                           f"(wordsmile itself no longer sets it)")
    if not get_token():
        raise ReleaseError(f"cannot publish to {url}: no Hugging Face token; run `hf auth login` or set HF_TOKEN "
                           f"to a token with write access to the repository")


def _upload(p: Path, url: str) -> str:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ReleaseError(f"cannot open {url!r}: {e} (install the fsspec backend for this URL scheme, "
                           f"e.g. s3fs, gcsfs or huggingface_hub)") from None
    target = root.rstrip("/") + "/" + p.name
    if fs.exists(target):
        raise FileExistsError(f"{url.rstrip('/')}/{p.name} already exists: published releases are never overwritten")
    if p.is_file():   # a verified archive: one file
        order, base, dst_of = [p.name], p.parent, (lambda rel: target)
        try:
            fs.makedirs(root, exist_ok=True)
        except (NotImplementedError, OSError):
            pass
    else:
        sums, _ = read_sums(p)
        order = sorted(sums) + [SUMS]  # SHA256SUMS last: a partial upload never looks complete
        base, dst_of = p, (lambda rel: f"{target}/{rel}")
    for rel in order:
        dst = dst_of(rel)
        parent = dst.rsplit("/", 1)[0]
        try:
            fs.makedirs(parent, exist_ok=True)
        except (NotImplementedError, OSError):
            pass  # object stores have no folders
        fs.put_file(str(base / rel), dst)
    for rel in order:
        h = hashlib.sha256()
        with fs.open(dst_of(rel), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != sha256_file(base / rel):
            raise ReleaseError(f"published copy of {rel} at {target} has a different hash: upload corrupted")
    return (url.rstrip("/") + "/" + p.name) if "://" in url else target
