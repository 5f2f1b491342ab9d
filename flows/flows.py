"""Prefect flows: `build-dataset` and one flow per stage. They run the same stage code as the CLI
(wordsmile/build.py) with a mapper that turns per-item work into mapped Prefect tasks.

    prefect deployment run build-dataset/sample
    prefect deployment run assemble-dataset/sample -p overrides='["assemble.min_frames=20"]'
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Optional

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefect import flow  # noqa: E402
from prefect.artifacts import create_image_artifact, create_markdown_artifact  # noqa: E402
from prefect.logging import get_run_logger  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.server import YOUTUBE_LIMIT  # noqa: E402
from flows.tasks import funnel_artifact, item_task, make_ingest_task, prefect_mapper  # noqa: E402
from wordsmile.build import STAGES, Build  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class FlowParameterRefused(ValueError):
    """A flow parameter that only the local config file or the CLI may give (anyone who reaches the
    Prefect API can start a deployment with any parameters)."""


def flow_roots() -> list[Path]:
    """Folders that paths in flow parameters must lie in: the worker's working folder (the repo) and
    those listed in WORDSMILE_FLOW_ROOTS (os.pathsep-separated), set on the worker by its operator."""
    extra = [Path(x).expanduser().resolve() for x in os.environ.get("WORDSMILE_FLOW_ROOTS", "").split(os.pathsep) if x]
    return [Path.cwd().resolve(), *extra]


def _abs(p: Optional[str], what: str = "path") -> Optional[str]:
    """Deployment parameters are relative to the repo (where the worker runs the flow from), and must
    stay inside flow_roots(): a caller of the API may not point a build at the worker's other files."""
    if not p:
        return p
    q = Path(p).expanduser()
    q = (q if q.is_absolute() else (Path.cwd() / q)).resolve()
    roots = flow_roots()
    if not any(q == r or r in q.parents for r in roots):
        raise FlowParameterRefused(f"flow parameter {what} = {p!r} is outside the folders flows may use "
                                   f"({', '.join(map(str, roots))}); add its folder to WORDSMILE_FLOW_ROOTS on "
                                   f"the worker, or run it with the wordsmile CLI")
    return str(q)


def check_flow_parameters(overrides=(), name: Optional[str] = None, dask_address: str = "",
                          section: str = "") -> None:
    """Refuse settings that name an executable or a path, or open a door (pipeline/config: local_only),
    a dataset name that is not a safe id, and a Dask scheduler not listed in WORDSMILE_DASK_ADDRESSES.
    All of these remain open to the local config file and the CLI."""
    from pipeline.config import refused_remote_overrides
    from pipeline.manifest import check_safe_id

    bad = refused_remote_overrides(overrides, section)
    if bad:
        raise FlowParameterRefused(f"flow parameter overrides {bad}: these settings name an executable or a path, "
                                   f"or open file:// / private URLs, and are accepted only from the local config "
                                   f"file or the CLI")
    if name is not None:
        try:
            check_safe_id(name)
        except ValueError as e:
            raise FlowParameterRefused(f"flow parameter name = {name!r}: {e}") from None
    allowed = [a for a in os.environ.get("WORDSMILE_DASK_ADDRESSES", "").split(",") if a]
    if dask_address and not any(fnmatch.fnmatchcase(dask_address, a) for a in allowed):   # tcp://host:* allowed
        raise FlowParameterRefused(f"flow parameter dask_address = {dask_address!r} is not listed in "
                                   f"WORDSMILE_DASK_ADDRESSES on the worker; leave it empty for a local cluster")


def make_task_runner(runner: str = "thread", dask_address: str = "", dask_workers: int = 2,
                     threads: int | None = None):
    """thread: Prefect's default thread pool. dask: a DaskTaskRunner on `dask_address`, or a local
    cluster of `dask_workers` single-threaded worker processes (MediaPipe/torch are not thread-safe
    enough to share one interpreter's models across many threads cheaply)."""
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=threads) if threads else ThreadPoolTaskRunner()
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    raise ValueError(f"task runner {runner!r}: use 'thread' or 'dask'")


def _run_build(b: Build, stages: list[str]):
    logger = get_run_logger()
    cfg = b.cfg
    ingest_task = make_ingest_task(cfg.sources.youtube.retries, cfg.sources.youtube.backoff_s)
    # flame53 expressions and CUDA speech run in the `gpu` pool (docs/scaling.md)
    gpu = frozenset({"expressions"} if cfg.expressions.backend == "flame53" else set()) | \
        frozenset({"speech"} if cfg.speech.device == "cuda" else set())
    mapper = prefect_mapper(lambda stage: item_task(stage, gpu=gpu, ingest_task=ingest_task))
    res = b.run(stages, mapper, wait_lock=600)
    funnel_artifact(res.records, key=f"funnel-{_slug(b.name)}", title=f"Funnel of {b.name}")
    ds = res.dataset_dir
    report = (Path(ds) / "report.html") if ds else None
    md = (f"### {b.name}\n\n```\n{res.summary}\n```\n\nrun folder: `{res.run_dir}`\n\ndataset: `{ds}`\n"
          + (f"\n[open the dataset report]({report.as_uri()}) (on the worker's file system) · "
             f"[dataset card]({(Path(ds) / 'README.md').as_uri()})\n" if report and report.exists() else ""))
    create_markdown_artifact(md, key=f"summary-{_slug(b.name)}", description="Build summary and the report")
    funnel_png = Path(ds) / "report" / "funnel.png" if ds else None
    if funnel_png is not None and funnel_png.exists():
        create_image_artifact(funnel_png.as_uri(), key=f"funnel-image-{_slug(b.name)}",
                              description=f"Records per stage and reason of {b.name}")
    logger.info("build %s finished: %s", b.name, res.counts())
    return {"run_dir": str(res.run_dir), "dataset": str(res.dataset_dir) if res.dataset_dir else None,
            "counts": res.counts(), "cache": res.cache}


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-") or "x"


def _build_flow(name: str, default_stages: list[str]):
    @flow(name=name, log_prints=True)
    def stage_flow(manifest: str = "manifests/sample.yaml", workspace: str = "ws",
                   config: Optional[str] = None, overrides: list[str] = [],  # noqa: B006 - Prefect params
                   stages: list[str] = default_stages, force: list[str] = [],  # noqa: B006
                   name: Optional[str] = None, runner: str = "thread", dask_address: str = "",
                   dask_workers: int = 2):
        check_flow_parameters(list(overrides), name, dask_address)
        paths = _abs(manifest, "manifest"), _abs(workspace, "workspace"), _abs(config, "config")
        tr = make_task_runner(runner, dask_address, dask_workers)
        # the task runner is a run-time choice, so the work runs in a subflow configured with it
        inner = _inner.with_options(task_runner=tr)
        return inner(*paths, list(overrides), list(stages), list(force), name)

    return stage_flow


@flow(name="build-run")
def _inner(manifest: str, workspace: str, config: Optional[str], overrides: list[str], stages: list[str],
           force: list[str], name: Optional[str]):
    # downloads share the server-wide 'youtube' rate limit (created by flows.server.setup) across workers
    overrides = [f"sources.youtube.global_limit={YOUTUBE_LIMIT}", *overrides]
    return _run_build(Build(manifest, workspace, config, overrides, force, name), stages)


build_dataset = _build_flow("build-dataset", list(STAGES))
ingest_sources = _build_flow("ingest-sources", ["ingest"])
transcribe_speech = _build_flow("transcribe-speech", ["speech"])
extract_faces = _build_flow("extract-faces", ["faces"])
regress_expressions = _build_flow("regress-expressions", ["expressions"])
assemble_dataset = _build_flow("assemble-dataset", ["assemble"])


def _dataset_param(dataset: str, workspace: str) -> tuple[Optional[Path], str]:
    """(dataset folder or None for a name under the workspace, workspace folder), both checked."""
    from pipeline.manifest import SAFE_ID

    ws = _abs(workspace, "workspace")
    if "/" in dataset or not SAFE_ID.match(dataset):
        return Path(_abs(dataset, "dataset")), ws
    return None, ws


@flow(name="build-on-pools", log_prints=True)
def build_on_pools(manifest: str = "manifests/sample.yaml", workspace: str = "ws", config: Optional[str] = None,
                   overrides: list[str] = [], force: list[str] = [],  # noqa: B006 - Prefect params
                   name: Optional[str] = None, runner: str = "thread", dask_address: str = "",
                   cpu_deployment: str = "extract-faces/sample", gpu_deployment: str = "regress-expressions/gpu",
                   assemble_deployment: str = "assemble-dataset/sample", timeout_s: float = 24 * 3600):
    """A build whose stages run as flow runs of other deployments, so each lands on its deployment's
    work pool: ingest + faces and assembly on the CPU pool, expressions (flame53: EMOCA) on the GPU
    pool (speech goes with ingest + faces; on a GPU machine set speech.device=cuda and it is tagged `gpu`). Runs them one after another (each holds the workspace lock while it runs; this flow does not).
    `runner`/`dask_address` apply to the faces step, the one worth spreading over a Dask cluster."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    check_flow_parameters(overrides, name, dask_address)
    common = {"manifest": _abs(manifest, "manifest"), "workspace": _abs(workspace, "workspace"),
              "config": _abs(config, "config"),
              "overrides": list(overrides), "force": list(force), "name": name}
    steps = [(cpu_deployment, {"stages": ["ingest", "speech", "faces"], "runner": runner,
                               "dask_address": dask_address}),
             (gpu_deployment, {"stages": ["expressions"]}),
             (assemble_deployment, {"stages": ["assemble"]})]
    runs = {}
    for dep, extra in steps:
        fr = run_deployment(dep, parameters={**common, **extra}, timeout=timeout_s)
        state = fr.state
        logger.info("%s: flow run %s on pool %s: %s", dep, fr.name, fr.work_pool_name, state.type.value)
        runs[dep] = {"flow_run": str(fr.id), "pool": fr.work_pool_name, "state": state.type.value}
        if not state.is_completed():
            raise RuntimeError(f"{dep} (flow run {fr.name}, {fr.id}) ended {state.type.value}: {state.message}")
    return runs


@flow(name="publish-release", log_prints=True)
def publish_release(dataset: str, version: str, workspace: str = "ws", url: str = "",
                    exclude: Optional[str] = None, tar: bool = False):
    """Release a built dataset as an immutable, checksummed version, verify it, and optionally publish it."""
    from dataset.release import publish, release, verify
    from pipeline.workspace import Workspace

    ds, ws_root = _dataset_param(dataset, workspace)
    exclude = _abs(exclude, "exclude")
    if url and ("://" not in url or url.startswith("file://")):
        _abs(url[len("file://"):] if url.startswith("file://") else url, "url")
    ws = Workspace(ws_root)
    ds = ds or ws.datasets / dataset
    rel = release(ds, ws, version, exclude=exclude, tar=tar)
    problems = verify(rel)
    if problems:
        raise RuntimeError(f"release {rel} failed verification: {problems}")
    out = {"release": str(rel)}
    if url:
        out["published"] = publish(rel, url)
    return out


@flow(name="train-model", log_prints=True)
def train_model(dataset: str, workspace: str = "ws", preset: str = "small", out: str = "",
                minutes: Optional[float] = 2.0, overrides: list[str] = []):  # noqa: B006 - Prefect params
    """Train CTEG on a built dataset: the same code as `wordsmile train DATASET --config PRESET`.
    `overrides` are model settings (`field=value`), `minutes` caps the training time."""
    from model.cli import model_config
    from model.train import train
    from pipeline.workspace import Workspace

    check_flow_parameters(list(overrides), section="model")
    if preset.endswith((".yaml", ".yml")) or "/" in preset:
        preset = _abs(preset, "preset")
    ds, ws_root = _dataset_param(dataset, workspace)
    out_dir = Path(_abs(out, "out")) if out else None
    ws = Workspace(ws_root)
    ds = ds or ws.datasets / dataset
    cfg = model_config(preset, list(overrides), time_limit_s=minutes * 60 if minutes else None)
    out_dir = out_dir or ws.root / "models" / f"{ds.name}-{cfg.preset}"
    summary = train(ds, out_dir, cfg, progress=False)
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in summary.items()}
