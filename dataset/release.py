"""Releases: immutable, checksummed copies of a dataset folder (docs/datasets.md).

`release` writes WORKSPACE/releases/NAME-VERSION/ (never overwritten) with the dataset files, SHA256SUMS,
provenance and licence notices, optionally rewriting the dataset without opted-out samples. `verify`
checks hashes, then schema and the EmoAva layout; only after the hashes match does it unpickle the stage-1
files, and then only through `safe_load_pickle` (lists, strings and numpy arrays, nothing else).
`publish` copies a verified release to any fsspec URL and checks the copy by reading it back."""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from pipeline.atomic import TMP_PREFIX, atomic_dir, atomic_path, write_json, write_text
from pipeline.hashing import sha256_file
from pipeline.manifest import check_safe_id
from pipeline.formats.dataset import SPLITS

SUMS = "SHA256SUMS"
RELEASE_CODE_VERSION = "1"
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
REQUIRED_INFO = ("name", "code_space", "D", "dims", "fps", "counts", "config_hash", "versions", "columns")


class ReleaseError(RuntimeError):
    pass


# ---------------------------------------------------------------- restricted unpickling

# The only globals a stage-1 pickle needs: numpy's array reconstruction (numpy 1 and 2 module names).
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a stage-1 pickle")


def safe_load_pickle(path: str | os.PathLike) -> list:
    """Unpickle a stage-1 file allowing only list / str / numpy ndarray reconstruction. Call it only on
    files whose hash `verify` has checked. Object arrays and any other type are refused."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            obj = _SafeUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise ReleaseError(f"{path}: refused or unreadable pickle ({e})") from None
    if not isinstance(obj, list):
        raise ReleaseError(f"{path}: expected a list, got {type(obj).__name__}")
    for i, x in enumerate(obj):
        if isinstance(x, np.ndarray):
            if x.dtype == object:
                raise ReleaseError(f"{path}: item {i} is an object array")
        elif not isinstance(x, str):
            raise ReleaseError(f"{path}: item {i} is a {type(x).__name__}, expected str or numpy array")
    return obj


# ---------------------------------------------------------------- checksums

def _files(root: Path) -> list[str]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() or p.is_symlink():
            out.append(p.relative_to(root).as_posix())
    return out


def write_sums(root: Path) -> Path:
    lines = [f"{sha256_file(root / rel)}  {rel}" for rel in _files(root) if rel != SUMS]
    return write_text(root / SUMS, "\n".join(lines) + "\n")


def read_sums(root: Path) -> tuple[dict[str, str], list[str]]:
    sums, problems = {}, []
    for n, line in enumerate((root / SUMS).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        if not m:
            problems.append(f"{SUMS} line {n}: malformed (expected '<sha256>  <path>')")
            continue
        rel = m.group(2)
        if rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"{SUMS} line {n}: path {rel!r} escapes the release folder")
            continue
        sums[rel] = m.group(1)
    return sums, problems


# ---------------------------------------------------------------- verify

def verify(path: str | os.PathLike) -> list[str]:
    """Check a release folder (or its .tar.gz): every file's SHA-256 against SHA256SUMS, no unlisted files,
    then dataset.json, the EmoAva stage-1 layout and the Parquet splits. Returns the problems, each naming
    the file; an empty list means the release is intact."""
    p = Path(path)
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory(prefix="wordsmile-verify-") as td:
            with tarfile.open(p, "r:gz") as tf:
                tf.extractall(td, filter="data")
            tops = [d for d in Path(td).iterdir()]
            if len(tops) != 1 or not tops[0].is_dir():
                return [f"{p.name}: expected one top-level folder, found {[t.name for t in tops]}"]
            return [f"{p.name}: {x}" for x in verify(tops[0])]
    if not p.is_dir():
        return [f"{p}: not a folder or .tar.gz"]
    if not (p / SUMS).is_file():
        return [f"{SUMS} is missing: {p} is not a release folder (make one with `wordsmile release`)"]
    sums, problems = read_sums(p)
    present = set(_files(p)) - {SUMS}
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
    for name in ("stage1_mean.npy", "stage1_std.npy"):
        f = d / name
        try:
            a = np.load(f, allow_pickle=False)
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        except ValueError as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        if a.shape != (D,) or a.dtype != np.float32 or not np.isfinite(a).all():
            problems.append(f"{name}: {a.dtype} {a.shape}, expected finite float32 ({D},)")
        elif name == "stage1_std.npy" and (a <= 0).any():
            problems.append(f"{name}: has non-positive entries")
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
    if not d.is_dir() and ws is not None and (ws.datasets / str(dataset_dir)).is_dir():
        d = ws.datasets / str(dataset_dir)
    if not (d / "dataset.json").is_file():
        raise ReleaseError(f"{d} is not a dataset folder (no dataset.json): build one with `wordsmile build`")
    return d


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
        write_text(out / "licenses" / f"{s['source_id']}.txt", text)


def _rewrite_without(src: Path, out: Path, info: dict, ids: list[str]) -> dict:
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
    for name in info.get("extra_files", []):
        shutil.copyfile(src / name, out / name)
    if (src / "provenance").is_dir():
        shutil.copytree(src / "provenance", out / "provenance")
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
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
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


def release(dataset_dir, ws, version: str, exclude: str | os.PathLike | None = None, tar: bool = False) -> Path:
    """Write the immutable release `ws.releases / NAME-VERSION` (FileExistsError if it exists) and verify
    it before it appears under its final name. With `exclude`, the listed sample ids are removed and the
    stage-1 files, statistics, Parquet, card and report are rewritten without them."""
    check_safe_id(version)
    src = _resolve_dataset(dataset_dir, ws)
    info = json.loads((src / "dataset.json").read_text(encoding="utf-8"))
    name = info["name"]
    _refuse_empty(info, src)
    dest = ws.releases / f"{name}-{version}"
    if dest.exists():
        raise FileExistsError(f"release {dest} already exists: releases are immutable, choose a new --version")
    ids = read_ids(exclude) if exclude else None
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    with atomic_dir(dest, replace=False) as tmp:
        if ids is not None:
            info = _rewrite_without(src, tmp, info, ids)
            _refuse_empty(info, src, after=f"excluding the {info['excluded']['removed']} listed samples")
        else:
            for rel in _files(src):
                if Path(rel).name.startswith(TMP_PREFIX):
                    continue
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, tmp / rel)
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
    if tar:
        _deterministic_tar(dest, ws.releases / f"{dest.name}.tar.gz", int(created.timestamp()))
    return dest


# ---------------------------------------------------------------- publish

def publish(path: str | os.PathLike, url: str) -> str:
    """Copy a verified release folder under `url` (any fsspec URL: a local folder, file://, s3://, gs://,
    hf://… with its backend installed) as URL/NAME-VERSION/, SHA256SUMS last, then read every file back
    and compare its hash. Refuses an unverified release or an existing destination. Returns the URL."""
    p = Path(path)
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
    sums, _ = read_sums(p)
    order = sorted(sums) + [SUMS]  # SHA256SUMS last: a partial upload never looks complete
    for rel in order:
        dst = f"{target}/{rel}"
        parent = dst.rsplit("/", 1)[0]
        try:
            fs.makedirs(parent, exist_ok=True)
        except (NotImplementedError, OSError):
            pass  # object stores have no folders
        fs.put_file(str(p / rel), dst)
    for rel in order:
        h = hashlib.sha256()
        with fs.open(f"{target}/{rel}", "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        want = sha256_file(p / rel)
        if h.hexdigest() != want:
            raise ReleaseError(f"published copy of {rel} at {target} has a different hash: upload corrupted")
    return (url.rstrip("/") + "/" + p.name) if "://" in url else target
