"""`wordsmile release|verify|publish`: the commands only; dataset.release (numpy, pandas) is imported
when a command runs, so `wordsmile --help` stays fast."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def register(app) -> None:
    """Add the top-level commands `release`, `verify` and `publish` to the wordsmile typer app."""
    def _workspace(dataset: str, workspace: Optional[Path]) -> Path:
        if workspace is not None:
            return workspace
        if os.environ.get("WORDSMILE_WORKSPACE"):
            return Path(os.environ["WORDSMILE_WORKSPACE"])
        d = Path(dataset).resolve()
        if d.parent.name == "datasets":  # WORKSPACE/datasets/NAME: release into that workspace
            return d.parent.parent
        return Path("ws")

    @app.command("release")
    def release_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder (WORKSPACE/datasets/NAME) or a dataset name."),
        version: str = typer.Option(..., "--version", help="Release version, e.g. 0.1.0 (letters, digits, . _ -)."),
        exclude: Optional[Path] = typer.Option(None, "--exclude", help="Text file of sample ids to leave out "
                                               "(opt-out and takedown requests), one per line, '#' comments."),
        tar: bool = typer.Option(False, "--tar", help="Also write releases/NAME-VERSION.tar.gz."),
        workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", help="Workspace that receives "
                                                 "releases/ (default: the dataset's own workspace)."),
    ):
        """Make the immutable release WORKSPACE/releases/NAME-VERSION/ of a built dataset.

        It holds the EmoAva stage-1 files, data/{train,validation,test}.parquet, dataset.json, the card and report, provenance
        (config, manifest, run summary, release.json), licence notices per source and SHA256SUMS. An
        existing version is never overwritten. `--exclude ids.txt` makes a version without those samples."""
        from dataset.release import ReleaseError, _io_error, release
        from pipeline.workspace import Workspace

        try:
            ws = Workspace(_workspace(dataset, workspace))
            out = release(dataset, ws, version, exclude=exclude, tar=tar)
        except (ReleaseError, FileExistsError, ValueError) as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            raise typer.Exit(2)
        except OSError as e:   # the workspace itself cannot be made (read-only, no permission)
            typer.secho(f"error: {_io_error(e, Path(workspace or '.'))}", fg="red", err=True)
            raise typer.Exit(2)
        typer.secho(f"release: {out}", fg="green")
        if tar:
            typer.echo(f"archive: {out}.tar.gz")

    @app.command("verify")
    def verify_cmd(path: Path = typer.Argument(..., help="Release folder (or its .tar.gz).")):
        """Check a release: SHA-256 of every file, no unlisted files, dataset.json, the EmoAva stage-1 layout
        and the Parquet splits. Exits 1 and names each bad file when anything is wrong."""
        from dataset.release import verify

        try:
            problems = verify(path)
        except OSError as e:
            problems = [f"{e.filename or path}: cannot read ({e.strerror or e})"]
        if problems:
            for x in problems:
                typer.secho(f"FAIL {x}", fg="red", err=True)
            raise typer.Exit(1)
        typer.secho(f"ok: {path} verified", fg="green")

    @app.command("publish")
    def publish_cmd(path: Path = typer.Argument(..., help="Verified release folder (or its .tar.gz)."),
                    url: str = typer.Argument(..., help="Destination folder or fsspec URL (file://, s3://, gs://, "
                                                        "hf://...); the release lands in URL/NAME-VERSION/.")):
        """Copy a verified release to a folder or any fsspec URL, checksum file last, and check the copy.

        Remote schemes need their fsspec backend installed (s3fs, gcsfs, huggingface_hub)."""
        from dataset.release import ReleaseError, _io_error, publish

        try:
            out = publish(path, url)
        except (ReleaseError, FileExistsError) as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            raise typer.Exit(2)
        except OSError as e:
            typer.secho(f"error: {_io_error(e, Path(url))}", fg="red", err=True)
            raise typer.Exit(2)
        typer.secho(f"published: {out}", fg="green")
