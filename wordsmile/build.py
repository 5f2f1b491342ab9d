"""The build runner: ingest → speech → faces → expressions → assemble, one stage after another.

The CLI (`wordsmile build`) and the Prefect flows (flows/) both call the stage functions here; they
differ only in the *mapper* that applies a per-item function to every item (a local process pool here,
Prefect's `.map` in the flows). Every stage leaves its output table in `state/NAME/` so one stage can
be rerun alone, and the content-addressed stage cache makes any rerun resume where the last stopped.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from pipeline.atomic import write_json, write_parquet, write_text
from pipeline.config import Config, load_config
from pipeline.context import StageContext
from pipeline.formats.state import read_state, write_state
from pipeline.manifest import Manifest, check_safe_id, load_manifest
from pipeline.progress import bar as progress_bar
from pipeline.records import Record, print_summary, records_frame
from pipeline.redact import redact_text
from pipeline.stage import Stage, read_stats, run_item
from pipeline.workspace import Workspace

STAGES = ("ingest", "speech", "faces", "expressions", "assemble")
ITEM_STAGES = ("ingest", "speech", "faces", "expressions")          # per-item stages, run through pipeline.stage.run_item
log = logging.getLogger("wordsmile.build")

# mapper(stage_name, items) -> [run_stage_item((stage_name, item, ctx)) for each item], in the order of items.
# It decides only *where* items run (this process, a process pool, Prefect tasks, Dask workers).
Mapper = Callable[[str, Sequence[tuple]], list]


def _unwritable(e: OSError, workspace) -> str:
    return (f"workspace {workspace}: cannot write {e.filename or workspace} ({e.strerror or e}); "
            f"choose a writable folder with --workspace")


class BuildError(RuntimeError):
    pass


def item_stage(name: str) -> Stage:
    """The Stage object of a per-item stage (imported here: the top layer is the one that knows them all)."""
    if name == "ingest":
        from extract.ingest import INGEST
        return INGEST
    if name == "speech":
        from extract.speech.stage import SPEECH
        return SPEECH
    if name == "faces":
        from extract.faces.stage import FACES
        return FACES
    if name == "expressions":
        from extract.expressions.stage import EXPRESSIONS
        return EXPRESSIONS
    raise BuildError(f"{name!r} is not a per-item stage ({', '.join(ITEM_STAGES)})")


def run_stage_item(args: tuple) -> Any:
    """(stage name, item, ctx) -> the stage's result for the item. Picklable: what every executor calls."""
    name, item, ctx = args
    from pipeline import media

    media.configure(ctx.cfg.media)   # run-wide settings in whatever process runs the item
    return run_item(item_stage(name), item, ctx)


# ---------------------------------------------------------------- the local mapper

def local_mapper(workers: int = 1) -> Mapper:
    """Serial in-process mapping for workers <= 1 (models load once), else a process pool."""

    def mapper(stage: str, items: Sequence[tuple]) -> list:
        items = list(items)
        bar = progress_bar(len(items), stage)
        try:
            if workers <= 1 or len(items) <= 1:
                out = []
                for it in items:
                    out.append(run_stage_item(it))
                    bar.update()
                return out
            results: list = [None] * len(items)
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futs = {pool.submit(run_stage_item, it): i for i, it in enumerate(items)}
                for f in as_completed(futs):
                    results[futs[f]] = f.result()
                    bar.update()
            return results
        finally:
            bar.close()

    return mapper


# ---------------------------------------------------------------- the build

@dataclass
class BuildResult:
    name: str
    run_dir: Path
    dataset_dir: Path | None
    records: list[Record]
    cache: dict[str, dict] = field(default_factory=dict)
    summary: str = ""
    problems: list[str] = field(default_factory=list)   # why the build did not succeed; empty = success

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def counts(self) -> dict:
        df = records_frame(self.records)
        return {f"{s}/{st}": int(n) for (s, st), n in df.groupby(["stage", "status"]).size().items()}


class Build:
    """One build of one manifest into one workspace. Use `run()` for everything, or the stage methods
    (as the Prefect flows do) with a mapper of your choice."""

    def __init__(self, manifest: str | Path | Manifest, workspace: str | Path, config: str | Path | None = None,
                 overrides: Iterable[str] = (), force: Iterable[str] = (), name: str | None = None,
                 cfg: Config | None = None):
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.cfg = cfg or load_config(config, overrides)
        self.name = name or self.manifest.name
        try:   # the name becomes state/NAME and datasets/NAME: one safe path component, checked here
            check_safe_id(self.name)
        except ValueError as e:
            raise BuildError(f"dataset name {self.name!r}: {e}") from None
        try:
            self.ws = Workspace(workspace)
        except OSError as e:
            raise BuildError(_unwritable(e, workspace)) from None
        force = set(force or ())
        unknown = force - set(STAGES) - {"all"}
        if unknown:
            raise BuildError(f"--force {sorted(unknown)}: unknown stage (stages: {', '.join(STAGES)})")
        if "all" in force:
            force = set(STAGES)
        self.force = force
        self.state_dir = self.ws.state / self.name
        self.started = time.time()
        self.run_dir: Path | None = None
        self.ctx: StageContext | None = None

    # -- setup
    def open_run(self) -> StageContext:
        self.run_dir = self.ws.new_run_dir()
        write_text(self.run_dir / "config.yaml", self.cfg.to_yaml())
        if self.manifest.path:   # provenance copy, with credentials/tokens in URLs redacted
            text = Path(self.manifest.path).read_text(encoding="utf-8", errors="replace")
            write_text(self.run_dir / "manifest.yaml", redact_text(text))
        self.ctx = StageContext(cfg=self.cfg, ws=self.ws, run_dir=self.run_dir, force=self.force,
                                log=logging.getLogger("wordsmile"))
        from pipeline import media

        media.configure(self.cfg.media)
        return self.ctx

    # -- state tables
    def _save_state(self, stage: str, df: pd.DataFrame, records: list[Record]) -> None:
        write_state(self.state_dir, stage, df, records)

    def load_state(self, stage: str) -> tuple[pd.DataFrame, list[Record]]:
        got = read_state(self.state_dir, stage)
        if got is None:
            raise BuildError(f"no saved output of stage '{stage}' for dataset '{self.name}' in {self.ws.root}: "
                             f"run it first (e.g. --stages {stage},...)")
        return got

    # -- stages
    def ingest(self, mapper: Mapper) -> tuple[pd.DataFrame, list[Record]]:
        from extract.ingest import segments_frame

        entries = [e for e in self.manifest.sources if e.enabled]
        results = mapper("ingest", [("ingest", (e, self.manifest), self.ctx) for e in entries])
        rows = [row for segs, _ in results for row in segs]
        recs = [r for _, rs in results for r in rs]
        segs = segments_frame(rows, recs)   # records any segment id it drops
        self._save_state("ingest", segs, recs)
        return segs, recs

    def _items(self, stage: str, df: pd.DataFrame) -> list[tuple]:
        return [(stage, row, self.ctx) for row in df.to_dict("records")]

    def speech(self, segs: pd.DataFrame, mapper: Mapper) -> tuple[pd.DataFrame, list[Record]]:
        """Each video planned by its source's policy (extract/speech/stage.py `plan`): heard (transcribed
        or aligned) by the stage, passed through as given, or skipped for want of text."""
        from extract.speech.stage import given_rows, plan, result_rows, speech_frame, video_item
        from pipeline.records import Reason, skipped

        policy = {e.id: (e.transcript or self.cfg.speech.transcript, e.align or self.cfg.speech.align)
                  for e in self.manifest.sources}
        rows, recs, items, groups = [], [], [], []
        for (src, vid), g in segs.groupby(["source_id", "video_id"], sort=False):
            g_rows = g.to_dict("records")
            transcript, align = policy.get(src, (self.cfg.speech.transcript, self.cfg.speech.align))
            mode = plan(str(g_rows[0].get("text_source", "")), transcript, align)
            if mode == "given":
                r, rc = given_rows(g_rows, "span and text as given (align: off)")
                rows += r
                recs += rc
            elif mode == "none":
                recs.append(skipped("speech", f"{src}/{vid}", Reason.NO_CAPTIONS,
                                    f"{g_rows[0]['video_path']}: no captions or text, and transcript is 'captions' "
                                    f"(set speech.transcript or the source's transcript: auto to transcribe it)"))
            else:
                items.append(video_item(g_rows, mode))
                groups.append(g_rows)
        results = mapper("speech", [("speech", it, self.ctx) for it in items])
        for g_rows, it, rec in zip(groups, items, results):
            r, rc = result_rows(g_rows, it, rec)
            rows += r
            recs += rc
        df = speech_frame(rows, list(segs.columns))
        self._save_state("speech", df, recs)
        return df, recs

    def faces(self, segs: pd.DataFrame, mapper: Mapper) -> tuple[pd.DataFrame, list[Record]]:
        recs = mapper("faces", self._items("faces", segs))
        df = segs.copy()
        df["faces_dir"] = [r.output if r.ok else "" for r in recs]
        self._save_state("faces", df, recs)
        return df, recs

    def expressions(self, faced: pd.DataFrame, mapper: Mapper) -> tuple[pd.DataFrame, list[Record]]:
        todo = faced[faced["faces_dir"] != ""]
        recs = mapper("expressions", self._items("expressions", todo))
        out = dict(zip(todo["segment_id"], (r.output if r.ok else "" for r in recs)))
        df = faced.copy()
        df["codes_dir"] = [out.get(s, "") for s in df["segment_id"]]
        self._save_state("expressions", df, recs)
        return df, recs

    def assemble(self, coded: pd.DataFrame, upstream: list[Record]) -> tuple[Path, list[Record]]:
        from dataset.assemble import assemble

        extra = self._rig_files(coded)
        path, recs = assemble(coded, self.ctx, self.name, records=upstream, manifest=self.manifest,
                              extra_files=extra)
        return path, recs

    def _rig_files(self, coded: pd.DataFrame) -> dict[str, Path]:
        """arkit52 datasets carry a linear rig (blendshapes → mesh) for rendering generated codes."""
        if self.cfg.expressions.backend != "arkit52":
            return {}
        from extract.expressions.rig import fit_rig_from_entries

        dirs = [Path(d) for d in coded.get("faces_dir", pd.Series(dtype=str)) if d]
        if not dirs:
            return {}
        rig_path = self.run_dir / "rig.npz"
        if fit_rig_from_entries(dirs, rig_path, self.cfg) is None:  # too few valid frames to fit one
            log.warning("no rig.npz: too few valid face frames to fit the blendshape rig")
            return {}
        return {"rig.npz": rig_path}

    # -- everything
    def run(self, stages: Iterable[str] | None = None, mapper: Mapper | None = None,
            wait_lock: bool | float = False) -> BuildResult:
        stages = list(stages or STAGES)
        bad = [s for s in stages if s not in STAGES]
        if bad:
            raise BuildError(f"unknown stage(s) {bad}; stages are {', '.join(STAGES)}")
        mapper = mapper or local_mapper(self.cfg.orchestration.workers)
        try:
            return self._run(stages, mapper, wait_lock)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise BuildError(_unwritable(e, self.ws.root)) from None
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise BuildError(f"workspace {self.ws.root}: no space left on device ({e}); nothing half-written "
                             f"was kept: free some space and rerun, finished items are reused from the cache"
                             ) from None

    def _run(self, stages: list[str], mapper: Mapper, wait_lock: bool | float) -> BuildResult:
        with self.ws.lock(wait=wait_lock):
            self.open_run()
            records: list[Record] = []
            dataset_dir = None

            def get(stage, compute):
                if stage in stages:
                    log.info("stage %s", stage)
                    return compute()
                return self.load_state(stage)

            segs, r = get("ingest", lambda: self.ingest(mapper))
            records += r
            if any(s in stages for s in ("speech", "faces", "expressions", "assemble")):
                heard, r = get("speech", lambda: self.speech(segs, mapper))
                records += r
            if "faces" in stages or any(s in stages for s in ("expressions", "assemble")):
                faced, r = get("faces", lambda: self.faces(heard, mapper))
                records += r
            if "expressions" in stages or "assemble" in stages:
                coded, r = get("expressions", lambda: self.expressions(faced, mapper))
                records += r
            if "assemble" in stages:
                dataset_dir, r = self.assemble(coded, records)
                records += r
            return self.finish(records, dataset_dir, stages)

    def outcome(self, records: list[Record], dataset_dir: Path | None, stages: Iterable[str] = STAGES) -> list[str]:
        """Why this build is not a success (empty = success): no sample produced, or more than
        orchestration.max_failed_share of one stage's items failed."""
        problems = []
        stages = list(stages)
        if dataset_dir is not None:
            info = json.loads((Path(dataset_dir) / "dataset.json").read_text(encoding="utf-8"))
            if int(info["total"]["samples"]) == 0:
                problems.append(f"no sample was produced: dataset {self.name} is empty (the reasons are above and "
                                f"in {Path(dataset_dir) / 'report.html'})")
        elif stages == ["ingest"] and not any(r.ok for r in records if r.stage == "ingest"):
            problems.append("ingest produced no segment")
        limit = self.cfg.orchestration.max_failed_share
        for stage in STAGES:
            mine = [r for r in records if r.stage == stage]
            n_failed = sum(r.status.value == "failed" for r in mine)
            if mine and limit < 1.0 and n_failed / len(mine) > limit:
                problems.append(f"{stage}: {n_failed} of {len(mine)} items failed ({n_failed / len(mine):.0%}), "
                                f"above orchestration.max_failed_share {limit:g}")
        return problems

    def finish(self, records: list[Record], dataset_dir: Path | None,
               stages: Iterable[str] = STAGES) -> BuildResult:
        write_parquet(self.run_dir / "records.parquet", records_frame(records))
        cache = {k: {"hits": v["hits"], "misses": v["misses"]} for k, v in read_stats(self.run_dir).items()
                 if v["hits"] + v["misses"]}
        summary = print_summary(records, title=f"wordsmile build '{self.name}' — {self.run_dir.name}")
        if cache:
            summary += "\ncache: " + ", ".join(f"{k} {v['hits']} reused / {v['misses']} computed"
                                              for k, v in cache.items()) + "\n"
        problems = self.outcome(records, dataset_dir, stages)
        summary += "".join(f"error: {x}\n" for x in problems)
        write_text(self.run_dir / "summary.txt", summary)
        write_json(self.run_dir / "run.json", {
            "name": self.name, "workspace": str(self.ws.root), "config_hash": self.cfg.hash(),
            "started": _dt.datetime.fromtimestamp(self.started, _dt.timezone.utc).isoformat(),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(), "cache": cache,
            "dataset": str(dataset_dir) if dataset_dir else None,
            "counts": BuildResult(self.name, self.run_dir, dataset_dir, records).counts(), "problems": problems})
        return BuildResult(self.name, self.run_dir, dataset_dir, records, cache, summary, problems)


def build(manifest, workspace, config=None, overrides=(), stages=None, force=(), name=None,
          workers: int | None = None, wait_lock: bool | float = False) -> BuildResult:
    b = Build(manifest, workspace, config, overrides, force, name)
    mapper = local_mapper(workers if workers is not None else b.cfg.orchestration.workers)
    return b.run(stages, mapper, wait_lock=wait_lock)
