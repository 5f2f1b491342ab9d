"""Saying what happened: build exit codes and the failure summary, `config show --reasons` with effective
values, a fast `wordsmile --help`."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from pipeline.records import Reason, failed, ok, print_summary, skipped, top_reasons

ROOT = Path(__file__).resolve().parent.parent


def wordsmile(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORDSMILE_NO_PROGRESS": "1", "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "wordsmile.cli", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_is_fast_and_imports_nothing_heavy():
    # CPU time, not wall time: the check must hold on a loaded CI machine too
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = wordsmile("--help")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert r.returncode == 0 and "release" in r.stdout and "build" in r.stdout
    assert cpu < 1.0, f"wordsmile --help used {cpu:.2f} s of CPU"
    code = ("import sys, wordsmile.cli as c; heavy = {'numpy', 'pandas', 'torch', 'pyarrow', 'prefect', "
            "'mediapipe', 'cv2', 'matplotlib'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_summary_names_top_reasons_with_an_example_detail():
    recs = [ok("ingest", "s/a"), failed("ingest", "s/b", Reason.MISSING_FILE,
                                        "table.csv row 3 (b): clip /data/b.mp4 does not exist"),
            failed("ingest", "s/c", Reason.MISSING_FILE, "table.csv row 4 (c): clip /data/c.mp4 does not exist")]
    recs += [skipped("faces", f"seg{i}", Reason.NO_FACE, f"no face of at least 40 px in any of {i} frames")
             for i in range(3)]
    recs.append(failed("ingest", "yt/x", Reason.DL_NETWORK, "https://example.org/v: connection refused"))
    top = top_reasons(recs)
    assert [(t["reason"], t["count"]) for t in top] == [("faces.no_face", 3), ("input.missing_file", 2),
                                                          ("download.network", 1)]
    assert top[1]["item_id"] == "s/b" and "row 3" in top[1]["detail"]
    text = print_summary(recs, console=_null_console())
    assert "Top reasons" in text and "e.g. s/b: table.csv row 3 (b): clip /data/b.mp4 does not exist" in text
    assert "https://example.org/v" in text


def _null_console():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"))


def test_build_of_a_missing_source_exits_non_zero_and_says_why(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text("name: nothing\nlicense: CC0-1.0\nsources:\n  - id: gone\n    kind: folder\n"
                 f"    path: {tmp_path / 'no-such-folder'}\n")
    r = wordsmile("build", str(m), "-w", str(tmp_path / "ws"))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "does not exist" in out and "no-such-folder" in out         # the cause, not only in records.parquet
    assert "error: no sample was produced" in r.stderr
    run_dir = next((tmp_path / "ws" / "runs").iterdir())
    assert json.loads((run_dir / "run.json").read_text())["problems"]
    assert "does not exist" in (run_dir / "summary.txt").read_text()


def test_failed_share_threshold(tmp_path):
    from wordsmile.build import Build

    m = tmp_path / "m.yaml"
    m.write_text(f"name: t\nlicense: CC0-1.0\nsources:\n  - id: f\n    kind: folder\n    path: {tmp_path}\n")
    ds = tmp_path / "ws" / "datasets" / "t"
    ds.mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps({"total": {"samples": 3}}))
    recs = [ok("faces", "a"), failed("faces", "b", Reason.ERROR, "x"), failed("faces", "c", Reason.ERROR, "y"),
            skipped("faces", "d", Reason.NO_FACE, "z")]
    assert Build(m, tmp_path / "ws").outcome(recs, ds) == []   # default 0.5: 2 of 4 is not above it
    strict = Build(m, tmp_path / "ws", overrides=["orchestration.max_failed_share=0.4"])
    assert strict.outcome(recs, ds) == ["faces: 2 of 4 items failed (50%), above orchestration.max_failed_share 0.4"]
    assert Build(m, tmp_path / "ws", overrides=["orchestration.max_failed_share=0.5"]).outcome(recs, ds) == []
    assert Build(m, tmp_path / "ws", overrides=["orchestration.max_failed_share=1"]).outcome(
        recs + [failed("ingest", "i", Reason.ERROR, "")], ds) == []   # 1 turns the check off
    (ds / "dataset.json").write_text(json.dumps({"total": {"samples": 0}}))
    assert any("no sample was produced" in p for p in strict.outcome([ok("faces", "a")], ds))


def test_config_show_reasons_shows_effective_values_and_hash(tmp_path):
    from pipeline.config import load_config
    from wordsmile.cli import app

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("faces:\n  policy: strict\n")
    res = CliRunner().invoke(app, ["config", "show", "--reasons", "-c", str(cfg_file),
                                   "--set", "assemble.min_frames=12", "--set", "sources.youtube.retries=5"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "* faces.policy = 'strict'   (default 'speaker')" in lines
    assert "* assemble.min_frames = 12   (default 8)" in lines
    assert "* sources.youtube.retries = 5   (default 3)" in lines
    assert "  assemble.max_frames = 253" in lines                    # unchanged: no mark
    assert sum(line.startswith("* ") for line in lines) == 3
    want = load_config(cfg_file, ["assemble.min_frames=12", "sources.youtube.retries=5"]).hash()
    assert f"# config hash: {want}" in lines and want != load_config().hash()


def test_text_encoder_loads_offline_without_forcing_the_hub_client_offline(tmp_path):
    """The CLI no longer sets HF_HUB_OFFLINE (publishing needs the hub); the text encoder must still load
    its local folder without any request: the hub address points at a recorder that must stay silent."""
    import http.server
    import threading

    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802
            seen.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=f"http://127.0.0.1:{srv.server_address[1]}", HF_HOME=str(tmp_path))
    code = ("import wordsmile.cli, os; assert 'HF_HUB_OFFLINE' not in os.environ; from model.text import TextEncoder; "
            "h = TextEncoder().encode(['hello there']); print(h[0].shape)")
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith("(") and seen == [], (r.stdout, seen)
