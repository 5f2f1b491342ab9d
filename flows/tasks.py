"""Prefect tasks around the stage code, and the mapper that runs per-item work as mapped tasks.

Tasks return small records (paths, hashes, counts), never frame arrays. Prefect's own result cache is
off (NO_CACHE): its default policy includes the flow-run id and does not resume across runs; the
content-addressed stage cache (pipeline/cache.py) does that instead."""
from __future__ import annotations

from typing import Callable, Sequence

from prefect import task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from wordsmile.build import expressions_item, faces_item
from pipeline.records import Reason, Record, summary_frame

TRANSIENT = {Reason.DL_NETWORK, Reason.DL_RATE_LIMITED}


class TransientDownloadError(RuntimeError):
    """Raised inside a download task so Prefect retries it with backoff; the last try returns records."""


def _item_id(args) -> str:
    seg = args[0]
    return f"{seg.get('source_id', '')}/{seg.get('video_id', '')} {seg['segment_id']}"


@task(name="extract-face", cache_policy=NO_CACHE, tags=["faces"], task_run_name="face {args[0][segment_id]}")
def face_task(args) -> Record:
    rec = faces_item(args)
    _log_item(args, rec)
    return rec


@task(name="regress-expression", cache_policy=NO_CACHE, tags=["expressions"],
      task_run_name="codes {args[0][segment_id]}")
def expression_task(args) -> Record:
    rec = expressions_item(args)
    _log_item(args, rec)
    return rec


@task(name="regress-expression-gpu", cache_policy=NO_CACHE, tags=["expressions", "gpu"],
      task_run_name="codes {args[0][segment_id]}")
def expression_gpu_task(args) -> Record:
    return expression_task.fn(args)


def _log_item(args, rec: Record) -> None:
    try:
        logger = get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (Dask worker without context)
        return
    msg = f"{_item_id(args)}: {rec.status.value} ({rec.reason.value}) {rec.detail}".strip()
    (logger.info if rec.ok else logger.warning)(msg)


def backoff_delays(retries: int, first: float) -> list[float]:
    """Exponential backoff: first, 2·first, 4·first, ... (Prefect adds jitter on top)."""
    return [first * (2 ** i) for i in range(retries)]


def make_ingest_task(retries: int, first_delay: float, jitter: float = 0.5):
    """A per-source ingest task whose retries (downloads only) are set from the config."""
    from prefect.runtime import task_run

    @task(name="ingest-source", cache_policy=NO_CACHE, tags=["download"], retries=retries,
          retry_delay_seconds=backoff_delays(retries, first_delay) or 0, retry_jitter_factor=jitter,
          task_run_name="ingest {entry.id}")
    def ingest_task(entry, manifest, ctx):
        from extract.ingest import ingest_source

        segs, recs = ingest_source(entry, manifest, ctx)
        transient = [r for r in recs if r.reason in TRANSIENT]
        if transient and (task_run.run_count or 1) <= retries:
            raise TransientDownloadError(f"{entry.id}: {len(transient)} transient download failure(s), "
                                         f"first: {transient[0].detail}")
        return segs, recs

    return ingest_task


def prefect_mapper(task_for: Callable[[Callable], object]):
    """A wordsmile.build mapper running each item as a mapped Prefect task, with a progress artifact."""

    def mapper(fn: Callable, items: Sequence, desc: str) -> list:
        items = list(items)
        if not items:
            return []
        t = task_for(fn)
        art = create_progress_artifact(0.0, description=f"{desc}: 0/{len(items)} items")
        futures = t.map(items)
        done = 0
        step = max(1, len(items) // 50)
        for _ in as_completed(futures):
            done += 1
            if done % step == 0 or done == len(items):
                update_progress_artifact(art, 100.0 * done / len(items),
                                         description=f"{desc}: {done}/{len(items)} items")
        return [f.result() for f in futures]

    return mapper


def default_task_for(gpu: bool = False):
    def task_for(fn):
        if fn is faces_item:
            return face_task
        if fn is expressions_item:
            return expression_gpu_task if gpu else expression_task
        raise ValueError(f"no Prefect task for {fn}")

    return task_for


def funnel_artifact(records: list[Record], key: str = "funnel", title: str = "Build funnel") -> None:
    """Table artifact: items in, kept, skipped and failed per stage and reason."""
    s = summary_frame(records)
    rows = [{"stage": r.stage, "status": r.status, "reason": r.reason, "count": int(r.count)}
            for r in s.itertuples(index=False)]
    create_table_artifact(rows, key=key, description=title)
