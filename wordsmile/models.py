"""`wordsmile models install|list`: every model file the stages use, in one cache (WORDSMILE_MODELS).

The face models (extract/faces/model_files.py) and the Whisper models (extract/speech/models.py) each
know their own pins; this is the one command over both.
"""
from __future__ import annotations

import typer


def register(app) -> None:
    from extract.faces import model_files as faces
    from extract.speech import models as speech

    @app.command("install")
    def install_cmd(
        face_landmarker: str = typer.Option("", "--face-landmarker", help="local face_landmarker.task to use"),
        face_detector_full_range: str = typer.Option(
            "", "--face-detector-full-range", help="local face_detection_full_range_sparse.tflite to use"),
        whisper: str = typer.Option(",".join(speech.SPECS), "--whisper",
                                    help="Whisper models to install (comma-separated: base, tiny.en; '' none). "
                                         "Larger ones (medium.en, large-v3) are local CTranslate2 folders: "
                                         "docs/speech.md"),
        force: bool = typer.Option(False, "--force", help="reinstall even if a verified file is present"),
    ):
        """Install the MediaPipe face models and the Whisper speech models into the user cache, each file
        verified by SHA-256."""
        configured = {"face_landmarker": face_landmarker, "face_detector_full_range": face_detector_full_range}
        failed = False
        for name in faces.MODELS:
            try:
                p = faces.install(name, configured.get(name) or None, force=force, log=typer.echo)
                typer.echo(f"ok  {name}: {p}")
            except faces.ModelError as e:
                typer.echo(str(e), err=True)
                failed = True
        for name in [w.strip() for w in whisper.split(",") if w.strip()]:
            if name not in speech.SPECS:
                typer.echo(f"--whisper {name!r}: not one of {', '.join(speech.SPECS)}", err=True)
                failed = True
                continue
            try:
                p = speech.install(name, force=force, log=typer.echo)
                typer.echo(f"ok  whisper {name}: {p}")
            except Exception as e:  # noqa: BLE001 - pip/network/verification: reported, the others go on
                typer.echo(f"whisper {name}: {e}", err=True)
                failed = True
        if failed:
            raise typer.Exit(1)

    @app.command("list")
    def list_cmd():
        """Show where each model is and whether it is installed and verified (re-hashes every file)."""
        typer.echo(f"model folder: {faces.model_dir()}")
        for r in faces.status_rows() + speech.status_rows():
            mark = "ok " if r["installed"] else "-- "
            typer.echo(f"{mark} {r['name']:<26} {r['file']:<42} {r['problem'] or 'verified'}")


__all__ = ["register"]
