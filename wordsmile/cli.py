"""The `wordsmile` command. Areas add their commands through `register(app)` functions; command bodies
import heavy modules (torch, mediapipe, prefect) lazily so `wordsmile --help` stays fast."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import typer

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# No HF_HUB_OFFLINE here: it would make `publish hf://...` fail for the whole process. The text encoder
# loads its local folder with local_files_only (model/text.py), which needs no hub either way.

app = typer.Typer(
    help="wordsmile: build text → facial-expression datasets (EmoAva format) and train CTEG models on them.\n\n"
         "Typical use: `wordsmile testdata make sample_data` (test media), `wordsmile build manifests/sample.yaml`, "
         "`wordsmile release WORKSPACE/datasets/sample --version 0.1.0`, `wordsmile train WORKSPACE/datasets/sample`.",
    no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_enable=False)

WS_OPT = typer.Option("ws", "--workspace", "-w", help="Workspace folder (sources, cache, datasets, releases, runs).",
                      envvar="WORDSMILE_WORKSPACE")
CFG_OPT = typer.Option(None, "--config", "-c", help="YAML config file (see `wordsmile config show`).",
                       envvar="WORDSMILE_CONFIG")
SET_OPT = typer.Option([], "--set", "-s", help="Override a config value: section.field=value (repeatable).")


testdata_app = typer.Typer(no_args_is_help=True,
                           help="Generated test media: `testdata make DIR` (the bundled sample), "
                                "`testdata badcorpus DIR` (the bad-input corpus of the hardening tests).")
models_app = typer.Typer(no_args_is_help=True, help="Model files (MediaPipe face models, Whisper speech models): install and list them.")
config_app = typer.Typer(no_args_is_help=True, help="Show the configuration and what each setting is for.")
app.add_typer(testdata_app, name="testdata")
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _fail(msg: str, code: int = 2):
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


@config_app.command("show")
def config_show(config: Optional[Path] = CFG_OPT, set_: List[str] = SET_OPT,
                reasons: bool = typer.Option(False, "--reasons", help="List every setting with its reason.")):
    """Print the effective configuration as YAML (defaults + file + overrides) and its hash."""
    from pipeline.config import ConfigError, describe, load_config

    try:
        cfg = load_config(config, set_)
    except ConfigError as e:
        _fail(str(e))
    if reasons:
        # effective values (defaults + file + --set); '*' marks what differs from the default
        dumped = cfg.model_dump(mode="json")
        changed = 0
        for name, default, reason in describe():
            value = _dotted(dumped, name)
            default = _json(default)
            mark = "*" if value != default else " "
            changed += value != default
            typer.echo(f"{mark} {name} = {value!r}" + (f"   (default {default!r})" if value != default else "")
                       + f"\n      {reason}")
        typer.echo(f"# {changed} setting(s) differ from the default (marked *)")
    else:
        typer.echo(cfg.to_yaml())
    typer.echo(f"# config hash: {cfg.hash()}")


def _json(v):
    import json

    return json.loads(json.dumps(v, default=str))


def _dotted(d: dict, name: str):
    for k in name.split("."):
        d = d[k]
    return d


STAGES_HELP = ("Stages to run, comma-separated (ingest,speech,faces,expressions,assemble); the others are read "
               "from the workspace.")


@app.command()
def build(manifest: Path = typer.Argument(..., help="Source manifest (YAML), e.g. manifests/sample.yaml."),
          workspace: Path = WS_OPT, config: Optional[Path] = CFG_OPT, set_: List[str] = SET_OPT,
          stages: str = typer.Option(",".join(("ingest", "speech", "faces", "expressions", "assemble")), help=STAGES_HELP),
          force: List[str] = typer.Option([], "--force", "-f", help="Recompute this stage even where cached (repeatable; 'all')."),
          name: Optional[str] = typer.Option(None, help="Dataset name (default: the manifest's name)."),
          workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel worker processes for per-item stages."),
          wait: bool = typer.Option(False, "--wait", help="Wait for another build on this workspace to finish instead of exiting."),
          verbose: bool = typer.Option(False, "--verbose", "-v")):
    """Build a dataset from a manifest: ingest → speech → faces → expressions → assemble.

    Every stage result is cached by content, so rerunning resumes; `--stages assemble` reruns assembly
    alone from the last build's tables; `--force faces` recomputes one stage."""
    _setup_logging(verbose)
    from wordsmile.build import BuildError, build as run_build
    from pipeline.config import ConfigError
    from pipeline.manifest import ManifestError
    from pipeline.workspace import WorkspaceLocked

    try:
        res = run_build(manifest, workspace, config, set_, [s.strip() for s in stages.split(",") if s.strip()],
                        force, name, workers, wait_lock=True if wait else False)
    except (BuildError, ConfigError, ManifestError, WorkspaceLocked) as e:
        _fail(str(e))
    if res.cache:
        typer.echo("cache: " + ", ".join(f"{k} {v['hits']} reused / {v['misses']} computed" for k, v in res.cache.items()))
    typer.echo(f"run folder: {res.run_dir}")
    if res.dataset_dir:
        typer.secho(f"dataset: {res.dataset_dir}", fg="yellow" if res.problems else "green")
    _exit_for(res)


def _exit_for(res) -> None:
    """Exit 1 with one line per problem when the build produced nothing or too many items failed."""
    for x in res.problems:
        typer.secho(f"error: {x}", fg="red", err=True)
    if res.problems:
        raise typer.Exit(1)


@app.command()
def ingest(manifest: Path = typer.Argument(..., help="Source manifest (YAML)."),
           workspace: Path = WS_OPT, config: Optional[Path] = CFG_OPT, set_: List[str] = SET_OPT,
           verbose: bool = typer.Option(False, "--verbose", "-v")):
    """Ingest the manifest's sources into the segment table (downloads, captions, MELD/MEmoR/table rows).

    The table is written to WORKSPACE/state/NAME/ingest.parquet; every failure is recorded with a reason."""
    _setup_logging(verbose)
    from wordsmile.build import BuildError, build as run_build
    from pipeline.config import ConfigError
    from pipeline.manifest import ManifestError
    from pipeline.workspace import WorkspaceLocked

    try:
        res = run_build(manifest, workspace, config, set_, ["ingest"])
    except (BuildError, ConfigError, ManifestError, WorkspaceLocked) as e:
        _fail(str(e))
    typer.echo(f"segment table: {Path(workspace).resolve() / 'state' / res.name / 'ingest.parquet'}")
    typer.echo(f"run folder: {res.run_dir}")
    _exit_for(res)


@app.command()
def doctor():
    """Check this machine: ffmpeg, MediaPipe and Whisper models, GPU, package versions — and say how to fix what is missing."""
    from wordsmile.doctor import run_doctor

    raise typer.Exit(run_doctor())


def _register_areas() -> None:
    """Mount the commands that each area defines next to its code."""
    from wordsmile import models
    from testdata import cli as testdata_cli
    from model import cli as model_cli
    from dataset import cli as dataset_cli
    from flows import cli as flows_cli

    testdata_cli.register(testdata_app)
    models.register(models_app)
    model_cli.register(app)
    dataset_cli.register(app)
    flows_cli.register(app)


_register_areas()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
