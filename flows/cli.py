"""`wordsmile prefect ...`: conveniences for the local Prefect recipe (see prefect.yaml)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

prefect_app = typer.Typer(no_args_is_help=True, help="Run the flows through a real Prefect server and worker.")


@prefect_app.command("demo")
def demo(deployment: str = typer.Argument("build-dataset/sample", help="Deployment to run."),
         param: List[str] = typer.Option([], "--param", "-p", help="Flow parameter key=value (JSON values)."),
         port: int = typer.Option(4200, help="Server port on 127.0.0.1."),
         home: Optional[Path] = typer.Option(None, help="PREFECT_HOME for this server (default: ~/.prefect)."),
         postgres: bool = typer.Option(False, "--postgres", help="Back the server with a throwaway PostgreSQL "
                                       "cluster (deleted afterwards) instead of SQLite."),
         keep: bool = typer.Option(False, "--keep", help="Leave the server and its UI up after the run, to browse "
                                   "the flow run, its task runs and artifacts; Ctrl-C stops it.")):
    """Start a Prefect server on 127.0.0.1, deploy every flow of prefect.yaml to the `wordsmile` (CPU)
    and `wordsmile-gpu` process pools, run DEPLOYMENT with a `--run-once` CPU worker, print its final
    state and stop the server. Dask: `-p runner=dask -p dask_address=tcp://127.0.0.1:8786`."""
    from contextlib import nullcontext

    from flows.server import local_server, run_deployment, setup

    params = {}
    for p in param:
        k, _, v = p.partition("=")
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    if postgres:
        from flows.cluster import postgres as pg_cluster
    import time

    t0 = time.monotonic()

    def step(msg: str) -> None:   # the server start, deploy and worker are minutes of otherwise silent work
        typer.echo(f"[{time.monotonic() - t0:6.1f} s] {msg}")

    step("starting the Prefect server on 127.0.0.1" + (" (PostgreSQL)" if postgres else "") + " ...")
    with (pg_cluster() if postgres else nullcontext()) as pg, \
            local_server(port=port, home=home, db_url=pg.url if pg else None) as env:
        step(f"server: {env['PREFECT_API_URL']}" + (f" on PostgreSQL 127.0.0.1:{pg.port}" if pg else ""))
        step("creating the work pools and limits, deploying every flow of prefect.yaml ...")
        setup(env)
        step(f"running {deployment} with a --run-once worker (progress: {env['PREFECT_API_URL'][:-4]}) ...")
        state = run_deployment(env, deployment, params)
        step(f"{deployment}: {state}")
        if keep:
            typer.echo(f"UI: {env['PREFECT_API_URL'][:-4]}  (PREFECT_API_URL={env['PREFECT_API_URL']}); "
                       f"Ctrl-C stops the server")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    typer.secho(f"{deployment}: {state}", fg="green" if state == "COMPLETED" else "red")
    raise typer.Exit(0 if state == "COMPLETED" else 1)


@prefect_app.command("deploy")
def deploy():
    """Deploy every flow of prefect.yaml to the server at $PREFECT_API_URL (pools `wordsmile` and
    `wordsmile-gpu`) and create the `download` and `gpu` tag concurrency limits from the config defaults."""
    from flows.server import prefect_env, setup
    from pipeline.config import load_config

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        typer.secho("error: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) to your server", fg="red", err=True)
        raise typer.Exit(2)
    cfg = load_config()
    o = cfg.orchestration
    setup(prefect_env(api), download=o.download_concurrency, gpu=o.gpu_concurrency,
          youtube_per_min=cfg.sources.youtube.rate_limit_per_min)
    typer.echo("deployed; start workers with: prefect worker start --pool wordsmile  "
               "(and on GPU machines: --pool wordsmile-gpu)")


def register(app: typer.Typer) -> None:
    app.add_typer(prefect_app, name="prefect")
