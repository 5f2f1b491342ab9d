"""Prefect tasks around the stage runner, and the mapper that runs per-item work as mapped tasks.

Every task calls `wordsmile.build.run_stage_item`, the same function the CLI's process pool calls, so a
Prefect run and a CLI run share the cache, the records and the statistics. Tasks return small records
(paths, hashes, counts), never frame arrays. Prefect's own result cache is off (NO_CACHE): its default
policy includes the flow-run id and does not resume across runs; the content-addressed stage cache
(pipeline/cache.py) does that instead."""
from __future__ import annotations

from typing import Sequence

from prefect import task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from pipeline.records import Reason, Record, summary_frame
from wordsmile.build import item_stage, run_stage_item

TRANSIENT = {Reason.DL_NETWORK, Reason.DL_RATE_LIMITED}


class TransientDownloadError(RuntimeError):
    """Raised inside a download task so Prefect retries it with backoff; the last try returns records."""


def _records(result) -> list[Record]:
    return [result] if isinstance(result, Record) else list(result[1])


@task(cache_policy=NO_CACHE)
def stage_task(args):
    """One item of one stage; Prefect shows it as `STAGE LABEL` (e.g. `faces meld/dia3_utt1 0.00-2.41s`)."""
    result = run_stage_item(args)
    try:
        logger = get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (Dask worker without context)
        return result
    stage = item_stage(args[0])
    for rec in _records(result):
        msg = f"{stage.label(args[1])}: {rec.status.value} ({rec.reason.value}) {rec.detail}".strip()
        (logger.info if rec.ok else logger.warning)(msg)
    return result


def backoff_delays(retries: int, first: float) -> list[float]:
    """Exponential backoff: first, 2·first, 4·first, ... (Prefect adds jitter on top)."""
    return [first * (2 ** i) for i in range(retries)]


def make_ingest_task(retries: int, first_delay: float, jitter: float = 0.5):
    """A per-source ingest task whose retries (downloads only) are set from the config."""
    from prefect.runtime import task_run

    @task(name="ingest-source", cache_policy=NO_CACHE, tags=["download"], retries=retries,
          retry_delay_seconds=backoff_delays(retries, first_delay) or 0, retry_jitter_factor=jitter)
    def ingest_task(args):
        segs, recs = run_stage_item(args)
        transient = [r for r in recs if r.reason in TRANSIENT]
        if transient and (task_run.run_count or 1) <= retries:
            raise TransientDownloadError(f"{args[1][0].id}: {len(transient)} transient download failure(s), "
                                         f"first: {transient[0].detail}")
        return segs, recs

    return ingest_task


def item_task(stage: str, gpu: bool | frozenset = False, ingest_task=None):
    """The Prefect task for one stage's items: tags route and limit them (`download`, `gpu`). `gpu`: the
    stages whose items run on a GPU (True: expressions, as before)."""
    if stage == "ingest":
        return ingest_task
    gpu_stages = {"expressions"} if gpu is True else set(gpu or ())
    tags = [stage] + (["gpu"] if stage in gpu_stages else [])
    return stage_task.with_options(name=f"{stage}-item", tags=tags)


def prefect_mapper(task_for):
    """A wordsmile.build mapper running each item as a mapped Prefect task, with a progress artifact."""

    def mapper(stage: str, items: Sequence[tuple]) -> list:
        items = list(items)
        if not items:
            return []
        t = task_for(stage)
        art = create_progress_artifact(0.0, description=f"{stage}: 0/{len(items)} items")
        futures = [t.with_options(task_run_name=f"{stage} {item_stage(stage).label(it[1])}").submit(it)
                   for it in items]
        done = 0
        step = max(1, len(items) // 50)
        for _ in as_completed(futures):
            done += 1
            if done % step == 0 or done == len(items):
                update_progress_artifact(art, 100.0 * done / len(items),
                                         description=f"{stage}: {done}/{len(items)} items")
        return [f.result() for f in futures]

    return mapper


def funnel_artifact(records: list[Record], key: str = "funnel", title: str = "Build funnel") -> None:
    """Table artifact: items in, kept, skipped and failed per stage and reason."""
    s = summary_frame(records)
    rows = [{"stage": r.stage, "status": r.status, "reason": r.reason, "count": int(r.count)}
            for r in s.itertuples(index=False)]
    create_table_artifact(rows, key=key, description=title)
