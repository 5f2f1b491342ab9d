"""Orchestration settings (wordsmile/build.py, flows/)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class OrchestrationConfig(Section):
    workers: int = F(1, "parallel item workers in one build (processes)")
    max_failed_share: float = F(0.5, "a build exits non-zero when more than this share of one stage's items failed "
                                     "(broke, not deliberately skipped); 1 turns the check off", ge=0.0, le=1.0)
    download_concurrency: int = F(2, "concurrent downloads (Prefect tag 'download')")
    gpu_concurrency: int = F(1, "concurrent GPU tasks (Prefect tag 'gpu')")
    task_runner: str = F("thread", "thread (default) or dask; dask takes dask_address or starts a local cluster")
    dask_address: str = F("", "scheduler address for the dask runner; empty = local cluster")
    dask_workers: int = F(2, "worker processes of a local dask cluster")
