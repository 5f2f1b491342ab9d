"""Orchestration settings (wordsmile/build.py, flows/)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class OrchestrationConfig(Section):
    workers: int = F(1, "parallel item workers in one build (processes)")
    max_failed_share: float = F(0.5, "a build exits non-zero when more than this share of one stage's items failed "
                                     "(broke, not deliberately skipped); 1 turns the check off", ge=0.0, le=1.0)
    download_concurrency: int = F(2, "concurrent downloads (Prefect tag 'download')")
    gpu_concurrency: int = F(1, "concurrent GPU tasks (Prefect tag 'gpu')")
    item_timeout_s: float = F(1800.0, "wall-clock deadline of one item in any stage (0 = none): a 5-minute "
                              "MELD span takes ~4 min in the faces stage on one core, flame53 on a CPU longer; "
                              "past it the item fails with item.timeout and the run goes on", ge=0)
