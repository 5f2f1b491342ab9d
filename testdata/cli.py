"""`wordsmile testdata make|badcorpus`: the commands only; the generators are imported when a command
runs, so `wordsmile --help` does not pay for numpy and the media generators."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app) -> None:
    """Add `make` and `badcorpus` to the typer sub-app mounted as `wordsmile testdata`."""

    @app.command("make")
    def make(dest: Path = typer.Argument(..., help="folder to create (e.g. sample_data)"),
             force: bool = typer.Option(False, "--force", help="regenerate even if DEST already holds a sample")):
        """Generate the sample media: talking-face clips with captions and ground-truth signals, in the
        folder, table, MELD and web layouts (deterministic; ~1.5 MB; ~10 s)."""
        import time

        from testdata.samplegen import make_sample

        t0 = time.monotonic()
        idx = make_sample(dest, force=force)
        typer.echo(f"sample: {len(idx['clips'])} clips, {len(idx['files'])} files in {dest} "
                   f"({time.monotonic() - t0:.1f} s); manifests/sample.yaml reads it from sample_data/")

    @app.command("badcorpus")
    def badcorpus(dest: Path = typer.Argument(..., help="folder to create"),
                  force: bool = typer.Option(False, "--force", help="regenerate even if DEST already holds it")):
        """Generate the bad-input corpus the hardening tests build over (corpus.json lists every item and
        the reason it must end with)."""
        from testdata.badcorpus import main

        raise typer.Exit(main([*(["--force"] if force else []), str(dest)]))
