"""The stage contract and its one runner.

A stage says what it is (name, code version, config section), how an item is named and keyed, and how
one item is processed. It never knows how it is run: the CLI's process pool, Prefect tasks and Dask
workers all call `run_item`, which owns everything around the stage's own work:

- the stage cache: a hit returns the stored record (renamed to this item), a miss runs the stage into a
  temporary entry that becomes the finished entry only if the stage returns (a rejection is cached like
  a success: rerunning it would reject it again);
- the guard: an expected failure (`ItemError`: a broken file, a timeout) or a bug becomes a failed record
  that is not cached, so a rerun retries it; a `StageSetupError` (a missing model folder) concerns every
  item and stops the run;
- the per-item wall-clock deadline (`orchestration.item_timeout_s`);
- per-item statistics, appended to `RUN/stats/STAGE/HOST-PID.jsonl` by whatever process ran the item and
  merged from there (`read_stats`), so a pool, Prefect and Dask report the same counts.

This follows datatrove's split between a `PipelineStep` and its executors.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import traceback
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pipeline.records import ItemError, Reason, Record, Status, failed
from pipeline.redact import redact_text

STATS_DIR = "stats"


class StageSetupError(RuntimeError):
    """A problem that concerns every item of a stage (a missing model, a bad setting): the run stops."""


class DeadlineExceeded(ItemError):
    def __init__(self, seconds: float):
        super().__init__(Reason.TIMEOUT, f"ran past its deadline of {seconds:g} s "
                                         f"(orchestration.item_timeout_s)")


class Stage(ABC):
    """One per-item stage. Subclasses set the class attributes and implement `key_inputs` and `process`."""

    name: str = ""           # also the cache folder and the record's stage
    code_version: str = "1"  # bump when results change: old cache entries are then missed
    section: str = ""        # config section whose values enter the cache key
    cached: bool = True      # False: every run processes the item (ingest: sources have their own markers)

    def item_id(self, item: Any) -> str:
        return str(item["segment_id"])

    def label(self, item: Any) -> str:
        """A short human name of the item, for progress and task names."""
        return self.item_id(item)

    def precheck(self, item: Any, ctx) -> Record | None:
        """A record that decides the item before any work (e.g. nothing upstream); not cached."""
        return None

    def key_inputs(self, item: Any, ctx) -> tuple:
        """What, besides the stage's config section and code version, defines the result: content
        hashes and spans, never paths."""
        raise NotImplementedError

    @abstractmethod
    def process(self, item: Any, ctx, out: Path | None) -> Any:
        """Do the work of one item. Cached stages write their files into `out` (a temporary folder that
        becomes the cache entry) and return the item's Record; raise ItemError for a failure with a
        specific reason. Uncached stages get `out=None` and return what `failed_result` returns."""

    def failed_result(self, item: Any, record: Record) -> Any:
        """What a failed item returns (an uncached stage may return more than a record)."""
        return record


# ------------------------------------------------------------------ the runner

def run_item(stage: Stage, item: Any, ctx) -> Any:
    """Run one item of `stage` with the cache, the guard, the deadline and the statistics."""
    t0 = time.monotonic()
    item_id = stage.item_id(item)
    cache_use = "none"
    try:
        with deadline(ctx.cfg.orchestration.item_timeout_s):
            result = stage.precheck(item, ctx)
            if result is None and not stage.cached:
                result = stage.process(item, ctx, None)
            elif result is None:
                cache = ctx.cache(stage.name, stage.code_version, ctx.cfg.section_params(stage.section))
                key = cache.key(*stage.key_inputs(item, ctx))
                entry = cache.get(key)
                cache_use = "hit" if entry is not None else "miss"
                result = _reuse(entry, item_id) if entry is not None else _compute(stage, item, ctx, cache, key)
    except StageSetupError:
        raise
    except ItemError as e:
        result = stage.failed_result(item, failed(stage.name, item_id, e.reason, str(e)))
    except Exception as e:  # noqa: BLE001 - a bug in one item must not end the run: recorded, not swallowed
        tb = traceback.format_exc(limit=6).strip().splitlines()[-3:]
        detail = redact_text(f"{type(e).__name__}: {e} | " + " | ".join(tb))   # a URL in it may hold a token
        ctx.log.warning("%s: item %s failed: %s", stage.name, item_id, detail)
        result = stage.failed_result(item, failed(stage.name, item_id, Reason.ERROR, detail[-1200:]))
    _write_stat(ctx.run_dir, stage.name, item_id, cache_use, result, time.monotonic() - t0)
    return result


def _reuse(entry: Path, item_id: str) -> Record:
    rec = Record.load(entry / "record.json")
    rec.item_id = item_id    # an entry is shared by items with the same inputs (same bytes, same span)
    rec.output = _output(rec, entry)
    return rec


def _output(rec: Record, entry: Path) -> str:
    """The entry's path for ok and skipped items (a skipped item's figures say why, e.g. the report draws
    every face of a rejected two-shot from faces/quality.json); failures name none."""
    return "" if rec.status is Status.FAILED else str(entry)


def _compute(stage: Stage, item: Any, ctx, cache, key: str) -> Record:
    from pipeline.atomic import write_json

    with cache.put(key, meta={"item_id": stage.item_id(item)}) as tmp:
        rec = stage.process(item, ctx, tmp)
        rec.output = _output(rec, cache.path(key))
        write_json(tmp / "record.json", rec.to_json())
    return rec


# ------------------------------------------------------------------ deadlines

_local = threading.local()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """A wall-clock deadline for the work inside. Long loops call `check_deadline()` (the decoder does, per
    batch, and kills its ffmpeg); in a process's main thread a timer signal also interrupts Python code
    that never checks. Nested deadlines keep the earliest."""
    if not seconds or seconds <= 0:
        yield
        return
    prev = getattr(_local, "deadline", None)
    end = time.monotonic() + seconds
    _local.deadline = min(end, prev[0]) if prev else end, seconds
    use_signal = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_signal:
        def on_alarm(signum, frame):
            raise DeadlineExceeded(seconds)
        old = signal.signal(signal.SIGALRM, on_alarm)
        old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if use_signal:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)
            signal.signal(signal.SIGALRM, old)
        _local.deadline = prev


def remaining() -> float | None:
    """Seconds left before the current item's deadline (None: no deadline)."""
    d = getattr(_local, "deadline", None)
    return None if d is None else d[0] - time.monotonic()


def check_deadline() -> None:
    d = getattr(_local, "deadline", None)
    if d is not None and time.monotonic() > d[0]:
        raise DeadlineExceeded(d[1])


# ------------------------------------------------------------------ statistics

def _write_stat(run_dir: Path | None, stage: str, item_id: str, cache_use: str, result: Any, seconds: float):
    if run_dir is None:
        return
    rec = result if isinstance(result, Record) else next(iter(_records_of(result)), None)
    line = json.dumps({"stage": stage, "item": item_id, "cache": cache_use,
                       "status": rec.status.value if rec else Status.OK.value,
                       "reason": rec.reason.value if rec else Reason.OK.value, "seconds": round(seconds, 3)})
    d = Path(run_dir) / STATS_DIR / stage
    d.mkdir(parents=True, exist_ok=True)
    # one file per process: appends never interleave, and a shared folder works across machines
    with open(d / f"{socket.gethostname()}-{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _records_of(result: Any) -> list[Record]:
    """The records inside an uncached stage's result (e.g. ingest's (rows, records))."""
    if isinstance(result, tuple):
        for part in result:
            if isinstance(part, list) and part and isinstance(part[0], Record):
                return part
    return []


def read_stats(run_dir: str | Path) -> dict[str, dict]:
    """Per stage: items, cache hits and misses, seconds, merged from every process's stats file. Items
    processed twice (a worker killed after writing its line, the item rerun elsewhere) count once,
    by their last line."""
    out: dict[str, dict] = {}
    root = Path(run_dir) / STATS_DIR
    for d in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        last: dict[str, dict] = {}
        for f in sorted(d.glob("*.jsonl")):
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    s = json.loads(line)
                except ValueError:      # a line cut by a killed process
                    continue
                last[s["item"]] = s
        vals = list(last.values())
        out[d.name] = {"items": len(vals), "hits": sum(s["cache"] == "hit" for s in vals),
                       "misses": sum(s["cache"] == "miss" for s in vals),
                       "seconds": round(sum(s["seconds"] for s in vals), 3)}
    return out


__all__ = ["Stage", "StageSetupError", "DeadlineExceeded", "run_item", "deadline", "check_deadline", "remaining",
           "read_stats"]
