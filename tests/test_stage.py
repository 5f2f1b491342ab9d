"""The stage runner (pipeline/stage.py): cache, guard, deadline and statistics, the same for every executor;
and the layering of the packages (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import ast
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.context import StageContext
from pipeline.records import ItemError, Reason, Record, Status, ok, skipped
from pipeline.stage import Stage, StageSetupError, deadline, check_deadline, read_stats, run_item
from pipeline.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


class Squares(Stage):
    """A small real stage: writes n² to its entry; n < 0 is rejected, n == 13 is a broken input, n == 7 a bug,
    n == 99 a setup problem, n == 1000 runs forever."""

    name, code_version, section = "squares", "1", "assemble"

    def key_inputs(self, item, ctx):
        return (item["n"],)

    def process(self, item, ctx, out):
        n = item["n"]
        if n == 13:
            raise ItemError(Reason.MEDIA_UNREADABLE, f"item {n}: unreadable")
        if n == 7:
            raise ZeroDivisionError("a bug")
        if n == 99:
            raise StageSetupError("no model folder")
        if n == 1000:
            while True:
                check_deadline()
                time.sleep(0.01)
        (out / "value.txt").write_text(str(n * n))
        if n < 0:
            return skipped(self.name, self.item_id(item), Reason.TOO_SHORT, "negative")
        return ok(self.name, self.item_id(item))


SQUARES = Squares()


def _ctx(tmp_path, *overrides):
    ws = Workspace(tmp_path / "ws")
    return StageContext(cfg=load_config(None, list(overrides)), ws=ws, run_dir=ws.new_run_dir())


def _item(n, sid=None):
    return {"segment_id": sid or f"s{n}", "n": n}


def test_cache_hit_is_renamed_and_rejections_are_cached(tmp_path):
    c = _ctx(tmp_path)
    r1 = run_item(SQUARES, _item(3, "a"), c)
    assert r1.ok and (Path(r1.output) / "value.txt").read_text() == "9" and (Path(r1.output) / "DONE").exists()
    r2 = run_item(SQUARES, _item(3, "b"), c)            # same inputs, another item: the same entry
    assert r2.ok and r2.item_id == "b" and r2.output == r1.output
    s1 = run_item(SQUARES, _item(-2), c)
    # a skipped item names its entry too (its figures say why: the report draws them)
    assert s1.status is Status.SKIPPED and (Path(s1.output) / "DONE").exists() and s1.output != r1.output
    assert read_stats(c.run_dir)["squares"] == {**read_stats(c.run_dir)["squares"], "items": 3, "hits": 1,
                                                "misses": 2}
    c2 = _ctx(tmp_path)                                 # a new run: everything is reused
    assert run_item(SQUARES, _item(-2), c2).reason is Reason.TOO_SHORT
    assert read_stats(c2.run_dir)["squares"]["hits"] == 1


def test_failures_are_records_not_cached_and_setup_errors_stop(tmp_path):
    c = _ctx(tmp_path)
    r = run_item(SQUARES, _item(13), c)
    assert (r.status, r.reason) == (Status.FAILED, Reason.MEDIA_UNREADABLE) and "unreadable" in r.detail
    b = run_item(SQUARES, _item(7), c)
    assert (b.status, b.reason) == (Status.FAILED, Reason.ERROR) and "ZeroDivisionError: a bug" in b.detail
    assert not list((c.ws.cache / "squares").glob("*/*/DONE"))      # neither was cached: a rerun retries
    with pytest.raises(StageSetupError):
        run_item(SQUARES, _item(99), c)


def test_deadline_fails_the_item_with_its_own_reason(tmp_path):
    c = _ctx(tmp_path, "orchestration.item_timeout_s=0.3")
    t0 = time.monotonic()
    r = run_item(SQUARES, _item(1000), c)
    assert (r.status, r.reason) == (Status.FAILED, Reason.TIMEOUT) and time.monotonic() - t0 < 5
    assert "0.3 s" in r.detail
    with deadline(0.2):                     # code that never checks is interrupted too (main thread: a timer)
        with pytest.raises(ItemError):
            while True:
                sum(range(1000))


def _run_in_child(args):
    return run_item(SQUARES, *args).to_json()


def test_statistics_are_merged_from_every_process(tmp_path):
    c = _ctx(tmp_path)
    items = [_item(n) for n in range(6)]
    with ProcessPoolExecutor(2) as pool:
        recs = [Record.from_json(d) for d in pool.map(_run_in_child, [(it, c) for it in items])]
    assert all(r.ok for r in recs)
    files = list((c.run_dir / "stats" / "squares").glob("*.jsonl"))
    assert len(files) >= 1
    assert {k: read_stats(c.run_dir)["squares"][k] for k in ("items", "hits", "misses")} == \
        {"items": 6, "hits": 0, "misses": 6}


# ----------------------------------------------------------------------------- layering

LAYERS = {"pipeline": set(), "extract": {"pipeline"}, "dataset": {"pipeline"}, "model": {"pipeline"},
          "testdata": {"pipeline"}}
PACKAGES = ("pipeline", "extract", "dataset", "model", "testdata", "wordsmile", "flows")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            out.append((n.lineno, n.module))
    return out


def test_each_layer_imports_only_the_layers_below_it():
    bad = []
    for pkg, allowed in LAYERS.items():
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for line, mod in _imports(f):
                top = mod.split(".")[0]
                if top in PACKAGES and top != pkg and top not in allowed:
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    files = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
             for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for m, f in files.items():
        deps = set()
        for _, mod in _imports(f):
            while mod and mod not in files:
                mod = mod.rpartition(".")[0]
            if mod and mod != m and not m.startswith(mod + "."):   # a package's own __init__ is not a cycle
                deps.add(mod)
        graph[m] = deps
    state, cycles = {}, []

    def visit(u, stack):
        state[u] = 1
        for v in graph[u]:
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v, stack + [v])
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
