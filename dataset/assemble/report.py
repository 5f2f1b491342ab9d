"""The visual report: report.html plus report/* (matplotlib PNGs, JPEG frames, animated WebP previews),
readable offline.

What a dataset builder asks of a build: where did items go (funnel per source and stage, in segments),
what do kept faces look like (frames with box and landmarks; for multi-face clips the whole frame and
which face was kept, and why), why were others rejected (one example per reason with a frame and the
detail), how are face size, head pose, sharpness, coverage and valid ratio distributed, what do the codes
do over time (animated previews beside the curves), and which run made it (config hash, versions, when,
how long). The HTML references only its own files by relative path (no scripts, no external URLs), so
it opens from a release folder, a tarball or a bucket listing alike."""
from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.atomic import atomic_path, write_text
from pipeline.formats.dataset import SPLITS
from pipeline.progress import progress
from pipeline.records import STAGE_ORDER, Record, top_reasons

COLORS = {"train": "#4C72B0", "dev": "#DD8452", "test": "#55A868"}
STATUS_COLORS = {"ok": "#55A868", "skipped": "#DDAA33", "failed": "#C44E52"}


def _save(fig: Figure, dest: Path) -> str:
    with atomic_path(dest) as tmp:
        # no timestamp metadata: the PNGs are reproducible too
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    return f"report/{dest.name}"


def _hist(df: pd.DataFrame, col: str, title: str, xlabel: str, dest: Path, vline: float | None = None,
          discrete: bool = False) -> str:
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    vals = [df.loc[df["split"] == s, col].to_numpy(float) for s in SPLITS]
    allv = np.concatenate(vals) if vals else np.zeros(0)
    if allv.size and discrete and allv.max() - allv.min() <= 60:
        bins = np.arange(allv.min(), allv.max() + 2) - 0.5  # one bar per integer value
    else:
        bins = np.histogram_bin_edges(allv, bins=30) if allv.size else 10
    ax.hist([v for v in vals], bins=bins, stacked=True, label=list(SPLITS), color=[COLORS[s] for s in SPLITS])
    # draw the limit only when the data come near it; otherwise it squeezes the histogram into a corner
    if vline is not None and allv.size and allv.max() >= 0.5 * vline:
        ax.axvline(vline, color="k", ls="--", lw=1, label=f"limit {vline:g}")
    elif vline is not None:
        title += f" (limit {vline:g})"
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, dest)


def _dim_stats(df: pd.DataFrame, dims: list[str], dest: Path) -> str:
    tr = df[df["split"] == "train"]
    src = tr if not tr.empty else df
    fig = Figure(figsize=(max(6, 0.18 * len(dims) + 1), 3.6))
    ax = fig.add_subplot()
    if src.empty or not dims:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, dest)
    frames = np.concatenate([np.asarray(c, np.float64) for c in src["codes"]], axis=0)
    mean, std = frames.mean(0), frames.std(0)
    x = np.arange(len(dims))
    ax.bar(x, mean, yerr=std, color="#4C72B0", ecolor="#999999", capsize=1.5)
    ax.set_xticks(x)
    ax.set_xticklabels(dims, rotation=90, fontsize=6)
    ax.set_title("per-dimension mean ± std (" + ("train frames" if not tr.empty else "all frames: train is empty") + ")")
    fig.tight_layout()
    return _save(fig, dest)


def _curves(codes: np.ndarray, fps: float, dims: list[str], title: str, dest: Path, k: int = 6) -> str:
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    t = np.arange(codes.shape[0]) / fps
    top = np.argsort(-codes.std(0), kind="stable")[:k]
    for d in top:
        ax.plot(t, codes[:, d], lw=1.2, label=dims[d])
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    return _save(fig, dest)


def _funnel(funnel: list[dict], dest: Path) -> str | None:
    if not funnel:
        return None
    order = ["ingest", "speech", "faces", "expressions", "assemble", "release"]
    rows = sorted(funnel, key=lambda r: (order.index(r["stage"]) if r["stage"] in order else 99,
                                         r["status"], r["reason"]))
    labels = [f"{r['stage']}: {r['reason']}" for r in rows]
    fig = Figure(figsize=(6.5, 0.3 * len(rows) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r["count"] for r in rows], color=[STATUS_COLORS.get(r["status"], "#888888") for r in rows])
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("items")
    ax.set_title("records per stage and reason (green ok, yellow skipped, red failed)", fontsize=9)
    fig.tight_layout()
    return _save(fig, dest)


def _text_timing(r) -> str:
    """Where a sample's text and span came from: 'text: asr (p 0.93)', 'span aligned: given 0.00–5.08 s →
    1.81–4.47 s (+1.81 / −0.61 s)'."""
    from html import escape as e

    src = getattr(r, "text_source", "") or ""
    if not src:
        return ""
    conf = getattr(r, "asr_confidence", None)
    parts = [f"text: {e(src)}" + (f" (word probability {conf:.2f})" if conf is not None and conf == conf else "")]
    span = getattr(r, "span_source", "") or "given"
    if span == "aligned":
        parts.append(f"span aligned: given {r.given_start:.2f}–{r.given_end:.2f} s → {r.start:.2f}–{r.end:.2f} s "
                     f"({r.shift_start:+.2f} / {r.shift_end:+.2f} s)")
    else:
        parts.append(f"span: {e(span)}")
    return f"<p class='muted'>{' · '.join(parts)}</p>"


def pick_samples(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """k samples spread evenly over the canonical order (deterministic)."""
    if k <= 0 or df.empty:
        return df.iloc[:0]
    idx = np.unique(np.linspace(0, len(df) - 1, num=min(k, len(df))).round().astype(int))
    return df.iloc[idx]


# ---------------------------------------------------------------- what the report is made of

SEGMENT_STAGES = ("faces", "expressions", "assemble")


def source_funnel(records: list[Record], segments: pd.DataFrame) -> list[dict]:
    """Per source: input items at ingest (files, rows or videos: ok / skipped / failed), then the same
    unit, utterance segments, through every later stage: segments ingested, with a face, with codes, kept."""
    seg_source = dict(zip(segments["segment_id"].astype(str), segments["source_id"].astype(str))) \
        if len(segments) else {}
    out: dict[str, dict] = {}

    def row(src: str) -> dict:
        return out.setdefault(src, {"source_id": src, "inputs_ok": 0, "inputs_skipped": 0, "inputs_failed": 0,
                                    "segments": 0, "faces": 0, "expressions": 0, "kept": 0})

    for src in seg_source.values():
        row(src)["segments"] += 1
    for r in records:
        if r.stage == "ingest":
            row(r.item_id.split("/", 1)[0])[f"inputs_{r.status.value}"] += 1
        elif r.stage in SEGMENT_STAGES and r.ok and r.item_id in seg_source:
            row(seg_source[r.item_id])["kept" if r.stage == "assemble" else r.stage] += 1
    return [out[k] for k in sorted(out)]


def rejected_examples(records: list[Record]) -> list[dict]:
    """One example per (stage, reason) that kept items out, most frequent first."""
    ex = top_reasons(records, k=None)
    order = {st: i for i, st in enumerate(STAGE_ORDER)}
    return sorted(ex, key=lambda e: (order.get(e["stage"], 99), -e["count"], e["reason"]))


def reject_media(examples: list[dict], records: list[Record], segments: pd.DataFrame) -> dict[str, dict]:
    """item_id → where to draw its frame from: the segment's video and span, the kept face's track (faces
    entry), and the faces stage's quality.json (its overview of every face) when there is one."""
    want = {e["item_id"] for e in examples}
    by_id = {str(r["segment_id"]): r for r in segments.to_dict("records")} if len(segments) else {}
    faces_out = {r.item_id: r.output for r in records if r.stage == "faces" and r.output}
    out = {}
    for sid in want & set(by_id):
        r = by_id[sid]
        entry = faces_out.get(sid, "") or str(r.get("faces_dir") or "")
        out[sid] = {"video": str(r.get("video_path") or ""), "start": float(r["start"]), "end": float(r["end"]),
                    "faces_dir": entry}
    return out


def _quality(faces_dir: str) -> dict:
    try:
        return json.loads((Path(faces_dir) / "quality.json").read_text(encoding="utf-8")) if faces_dir else {}
    except (OSError, ValueError):
        return {}


def run_metadata(run_dir: Path | None, assemble_seconds: float | None = None) -> dict:
    """When and how long: the run id, when the build started (from the run folder's name), when this
    dataset was written, and the seconds in between."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    out = {"written": now.isoformat()}
    if run_dir is not None:
        out["run_id"] = Path(run_dir).name
        try:
            started = _dt.datetime.strptime(Path(run_dir).name.split("-")[0], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=_dt.timezone.utc)
            out["started"] = started.isoformat()
            out["build_seconds"] = round((now - started).total_seconds(), 1)
        except ValueError:
            pass
    if assemble_seconds is not None:
        out["assemble_seconds"] = round(assemble_seconds, 1)
    return out


# ---------------------------------------------------------------- charts

DIST = [("face_face_px_median", "face size (median, px)"), ("face_yaw_median", "yaw (median, deg)"),
        ("face_pitch_median", "pitch (median, deg)"), ("face_sharpness_median", "sharpness (median)"),
        ("coverage", "coverage (share of the utterance the frames cover)"), ("valid_ratio", "valid ratio")]


def _distributions(df: pd.DataFrame, dest: Path) -> str:
    fig = Figure(figsize=(9, 5))
    for k, (col, title) in enumerate(DIST):
        ax = fig.add_subplot(2, 3, k + 1)
        vals = [pd.to_numeric(df.loc[df["split"] == s, col], errors="coerce").dropna().to_numpy(float)
                if col in df.columns else np.zeros(0) for s in SPLITS]
        allv = np.concatenate(vals)
        if allv.size:
            bins = np.histogram_bin_edges(allv, bins=20) if np.ptp(allv) > 0 else 5
            ax.hist(vals, bins=bins, stacked=True, color=[COLORS[s] for s in SPLITS], label=list(SPLITS))
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="#888")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0 and allv.size:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, dest)


def _source_chart(funnel: list[dict], dest: Path) -> str | None:
    if not funnel:
        return None
    stages = [("segments", "ingested"), ("faces", "face kept"), ("expressions", "coded"), ("kept", "in dataset")]
    fig = Figure(figsize=(7, 0.6 * len(funnel) * len(stages) / 2 + 1.4))
    ax = fig.add_subplot()
    h = 0.8 / len(stages)
    colors = ["#9ecae1", "#6baed6", "#3182bd", "#55A868"]
    for j, (key, label) in enumerate(stages):
        y = np.arange(len(funnel))[::-1] + (len(stages) / 2 - j - 0.5) * h
        ax.barh(y, [f[key] for f in funnel], height=h, color=colors[j], label=label)
        for yy, f in zip(y, funnel):
            ax.text(f[key], yy, f" {f[key]}", va="center", fontsize=7)
    ax.set_yticks(np.arange(len(funnel))[::-1])
    ax.set_yticklabels([f["source_id"] for f in funnel], fontsize=8)
    ax.set_xlabel("utterance segments")
    ax.set_title("segments per source surviving each stage", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, dest)


# ---------------------------------------------------------------- the report

def _reuse(old_dir: Path | None, dest: Path) -> str | None:
    """A picture from an earlier report (a release rewrite has no video at hand)."""
    old = Path(old_dir) / "report" / dest.name if old_dir else None
    if old is None or not old.is_file():
        return None
    shutil.copyfile(old, dest)
    return f"report/{dest.name}"


def _media(kind: str, fn, dest: Path, old_dir, log, what: str) -> tuple[str | None, str]:
    """Make one picture; a failure becomes a line in the report (and a log warning), never an error."""
    src = _reuse(old_dir, dest)
    if src is not None:
        return src, ""
    if fn is None:
        return None, f"no {kind} (source video not available)"
    try:
        return fn(), ""
    except Exception as e:  # noqa: BLE001 - pictures are a courtesy: a missing video must not fail a build
        why = f"no {kind} ({type(e).__name__}: {str(e)[:160]})"
        log.warning("report %s for %s: %s", kind, what, why)
        return None, why


def write_report(out: Path, meta: dict, df: pd.DataFrame, cfg, media: dict | None = None,
                 thumbs_from: Path | None = None, log: logging.Logger | None = None,
                 rejects: dict | None = None, run: dict | None = None) -> Path:
    """Write `out/report.html` and `out/report/*`. `media` maps sample_id → (video_path, start, end,
    faces_dir) of kept samples, `rejects` item_id → {video, start, end, faces_dir} of the rejected
    examples in meta['rejected_examples']; `thumbs_from` is a dataset folder whose pictures may be reused
    (a release rewrite); `run` is run_metadata()."""
    from dataset.assemble import frames
    from pipeline.formats.dataset import split_order

    log = log or logging.getLogger("wordsmile")
    out = Path(out)
    rd = out / "report"
    rd.mkdir(parents=True, exist_ok=True)
    df = split_order(df)
    dims = list(meta["dims"])
    media, rejects = media or {}, rejects or {}
    pictures = cfg.thumbnails
    imgs = {
        "frames": _hist(df, "n_frames", "sequence length", "frames", rd / "hist_frames.png",
                        vline=cfg.max_frames, discrete=True),
        "duration": _hist(df, "duration", "duration", "seconds", rd / "hist_duration.png"),
        "words": _hist(df.assign(words_n=[len(str(t).split()) for t in df["text"]]), "words_n", "text length",
                       "words", rd / "hist_words.png", vline=cfg.max_words, discrete=True),
        "dims": _dim_stats(df, dims, rd / "dim_stats.png"),
        "dist": _distributions(df, rd / "distributions.png"),
    }
    if "coverage" in df.columns:
        imgs["coverage"] = _hist(df, "coverage", "coverage of the utterance by the sample's frames", "share",
                                 rd / "hist_coverage.png")
    funnel_png = _funnel(meta.get("funnel", []), rd / "funnel.png")
    sources_png = _source_chart(meta.get("funnel_by_source", []), rd / "funnel_sources.png")

    shown = pick_samples(df, cfg.report_samples)
    n_prev = min(len(shown), getattr(cfg, "report_previews", 3)) if pictures else 0
    examples = meta.get("rejected_examples", [])
    work = len(shown) + n_prev + len(examples)
    bar = iter(progress(range(work), "report: pictures", total=work, unit="picture"))
    if work:
        log.info("report: %d sample frames, %d previews, %d rejection examples", len(shown), n_prev, len(examples))

    cards = []
    for i, r in enumerate(shown.itertuples(index=False)):
        sid = r.sample_id
        curve = _curves(np.asarray(r.codes), float(r.fps), dims, f"{sid} ({r.split}, {r.n_frames} frames)",
                        rd / f"curves_{i}.png")
        m = media.get(sid)
        ok_media = pictures and m is not None and bool(m[0])
        thumb, why = _media("frame", (lambda m=m, sid=sid: frames.face_frame(
            m[0], m[1], m[2], m[3], rd / f"thumb_{sid}.jpg", cfg.thumbnail_size)) if ok_media else None,
            rd / f"thumb_{sid}.jpg", thumbs_from, log, sid)
        q = _quality(m[3]) if m is not None else {}
        ov, ov_why = None, ""
        if q.get("overview") and len(q["overview"].get("boxes") or []) > 1:
            ov, ov_why = _media("whole frame", (lambda m=m, q=q, sid=sid: frames.overview_frame(
                m[0], m[1], m[2], q["overview"], rd / f"overview_{sid}.jpg")) if ok_media else None,
                rd / f"overview_{sid}.jpg", thumbs_from, log, sid)
        elif thumbs_from and (Path(thumbs_from) / "report" / f"overview_{sid}.jpg").is_file():
            ov = _reuse(thumbs_from, rd / f"overview_{sid}.jpg")
        next(bar, None)
        prev = None
        if i < n_prev:
            prev, _ = _media("preview", (lambda m=m, r=r: frames.preview(
                m[0], m[1], m[2], m[3], np.asarray(r.codes), float(r.fps), dims, rd / f"preview_{r.sample_id}.webp"))
                if ok_media else None, rd / f"preview_{sid}.webp", thumbs_from, log, sid)
            next(bar, None)
        decision = str(getattr(r, "face_decision_detail", "") or q.get("decision_detail", "") or "")
        cards.append({"r": r, "curve": curve, "thumb": thumb, "why": why if pictures else "", "overview": ov,
                      "overview_why": ov_why, "decision": decision, "preview": prev,
                      "n_tracks": int(q.get("n_tracks", getattr(r, "face_n_tracks", 1) or 1) or 1)})

    rej = []
    for k, e in enumerate(examples):
        m = rejects.get(e["item_id"])
        dest = rd / f"reject_{k}.jpg"
        fn = None
        if pictures and m and m["video"]:
            q = _quality(m["faces_dir"])
            if q.get("overview") and q["overview"].get("boxes"):
                fn = lambda m=m, q=q, dest=dest: frames.overview_frame(  # noqa: E731
                    m["video"], m["start"], m["end"], q["overview"], dest)
            elif frames.read_track(m["faces_dir"]) is not None:
                fn = lambda m=m, dest=dest: frames.face_frame(  # noqa: E731
                    m["video"], m["start"], m["end"], m["faces_dir"], dest, cfg.thumbnail_size)
            else:
                fn = lambda m=m, dest=dest: frames.plain_frame(m["video"], m["start"], m["end"], dest)  # noqa: E731
        img, why = _media("frame", fn, dest, thumbs_from, log, e["item_id"])
        if img is None and e["stage"] == "ingest":
            why = "no frame: the input item produced no segment"
        rej.append({**e, "img": img, "why": why})
        next(bar, None)
    for _ in bar:
        pass
    write_text(out / "report.html", _html(meta, imgs, funnel_png, sources_png, cards, rej, run or {},
                                          _timing_table(df)))
    return out / "report.html"


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right}img{max-width:100%}.sample{border:1px solid #ddd;border-radius:6px;padding:.6em;
margin:.8em 0}.sample .pics{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}
.warn{color:#a33}code{background:#f5f5f5}.muted{color:#777;font-size:.9em}
.rejected{border-left:4px solid #C44E52;padding:.3em .8em;margin:.8em 0;display:flex;gap:1em;align-items:flex-start}
.rejected>div:first-child{flex:0 0 320px}
.rejected.skipped{border-color:#DDAA33}figure{margin:0}figcaption{font-size:.85em;color:#555;max-width:480px}
nav a{margin-right:.8em}"""


def _timing_table(df: pd.DataFrame, limit: int = 60) -> str:
    """Counts per text and span source, and every sample whose span is not the source's (aligned or
    transcribed): its text, where it came from and how far it moved."""
    from html import escape as e

    if df.empty or "text_source" not in df.columns:
        return "<p>No samples.</p>"
    counts = ", ".join(f"{e(str(k) or 'unknown')} {int(v)}" for k, v in df["text_source"].value_counts().items())
    spans = ", ".join(f"{e(str(k) or 'given')} {int(v)}" for k, v in df["span_source"].value_counts().items())
    moved = df[df["span_source"].isin(["aligned", "asr"])]
    rows = []
    for r in moved.head(limit).itertuples():
        given = (f"{r.given_start:.2f}–{r.given_end:.2f}" if r.given_start == r.given_start else "—")
        shift = (f"{r.shift_start:+.2f} / {r.shift_end:+.2f}" if r.shift_start == r.shift_start else "—")
        conf = f"{r.asr_confidence:.2f}" if r.asr_confidence == r.asr_confidence else "—"
        rows.append(f"<tr><td>{e(r.sample_id)}</td><td>{e(r.text[:80])}</td><td>{e(r.text_source)}</td>"
                    f"<td>{e(r.span_source)}</td><td class=n>{given}</td><td class=n>{r.start:.2f}–{r.end:.2f}</td>"
                    f"<td class=n>{shift}</td><td class=n>{conf}</td></tr>")
    more = f"<p class='muted'>… and {len(moved) - limit} more.</p>" if len(moved) > limit else ""
    table = ("<table class='timing'><tr><th>sample</th><th>text</th><th>text source</th><th>span</th><th>given, s</th>"
             "<th>final, s</th><th>shift start / end, s</th><th>word probability</th></tr>" + "".join(rows)
             + "</table>" + more) if rows else "<p>Every span is as its source gave it.</p>"
    return f"<p>Texts: {counts}. Spans: {spans}.</p>{table}"


def _html(meta: dict, imgs: dict, funnel_png: str | None, sources_png: str | None, cards: list, rej: list,
          run: dict, timing: str = "") -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{s}</td><td class=n>{c['samples']}</td><td class=n>{c['frames']}</td>"
                   f"<td class=n>{c['videos']}</td></tr>" for s, c in meta["counts"].items())
    warn = "".join(f"<p class='warn'>⚠ {e(w)}</p>" for w in meta.get("warnings", []))
    funnel_rows = "".join(f"<tr><td>{e(r['stage'])}</td><td>{e(r['status'])}</td><td>{e(r['reason'])}</td>"
                          f"<td class=n>{r['count']}</td></tr>" for r in meta.get("funnel", []))
    src_rows = "".join(
        f"<tr><td>{e(f['source_id'])}</td><td class=n>{f['inputs_ok']} / {f['inputs_skipped']} / {f['inputs_failed']}"
        f"</td><td class=n>{f['segments']}</td><td class=n>{f['faces']}</td><td class=n>{f['expressions']}</td>"
        f"<td class=n>{f['kept']}</td></tr>" for f in meta.get("funnel_by_source", []))
    sw = meta.get("versions", {}).get("software", {})
    ext = meta.get("versions", {}).get("extractors", [])
    dur = lambda s: f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"  # noqa: E731
    meta_rows = [("dataset", e(meta["name"])), ("config hash", f"<code>{e(meta['config_hash'])}</code>"),
                 ("code space", f"<code>{e(meta['code_space'])}</code>, D = {meta['D']}")]
    if run.get("run_id"):
        meta_rows.append(("run", f"<code>{e(run['run_id'])}</code>"))
    if run.get("started"):
        meta_rows.append(("build started", e(run["started"])))
    meta_rows.append(("written", e(run.get("written", "unknown"))))
    if "build_seconds" in run:
        meta_rows.append(("build took", dur(run["build_seconds"]) + (f" (assembly {dur(run['assemble_seconds'])})"
                                                                   if "assemble_seconds" in run else "")))
    meta_rows.append(("software", ", ".join(f"{e(k)} {e(str(v))}" for k, v in sw.items())))
    for x in ext:
        meta_rows.append(("extractor", e(", ".join(f"{k}: {json.dumps(v, sort_keys=True)}" for k, v in x.items()))))
    meta_html = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in meta_rows)

    sample_html = []
    for c in cards:
        r = c["r"]
        pics = []
        if c["thumb"]:
            pics.append(f"<figure class='example-frame'><img src='{e(c['thumb'])}' alt='kept face of "
                        f"{e(r.sample_id)} with its box and landmarks' width='200'><figcaption>kept face, box and "
                        f"landmarks</figcaption></figure>")
        elif c["why"]:
            pics.append(f"<p class='muted'>{e(c['why'])}</p>")
        if c["overview"]:
            pics.append(f"<figure class='multi-face'><img src='{e(c['overview'])}' alt='whole frame of "
                        f"{e(r.sample_id)}: every face, the kept one in green' width='360'><figcaption>"
                        f"{c['n_tracks']} faces tracked; kept (green): {e(c['decision'])}</figcaption></figure>")
        elif c["overview_why"]:
            pics.append(f"<p class='muted'>{e(c['overview_why'])}</p>")
        if c["preview"]:
            pics.append(f"<figure class='preview'><img src='{e(c['preview'])}' alt='animated preview of "
                        f"{e(r.sample_id)} with its code curves'><figcaption>first seconds, codes with a time "
                        f"cursor</figcaption></figure>")
        decision = f"<p class='muted'>face: {e(c['decision'])}</p>" if c["decision"] else ""
        cov = getattr(r, "coverage", None)
        cov = f" · covers {cov:.0%} of the utterance" if cov is not None and cov == cov else ""
        heard = _text_timing(r)
        sample_html.append(
            f"<div class='sample'><div class='pics'>{''.join(pics)}</div><div><p><b>{e(r.text)}</b></p>"
            f"<p>{e(r.sample_id)} · {e(r.split)} · {e(r.source_id)}/{e(r.video_id)} · {r.start:.2f}–{r.end:.2f} s"
            f" · {r.n_frames} frames @ {r.fps:g} fps{cov}</p>{heard}{decision}"
            f"<img src='{e(c['curve'])}' alt='code curves of {e(r.sample_id)}'></div></div>")
    rej_html = []
    for x in rej:
        pic = (f"<img src='{e(x['img'])}' alt='frame of rejected {e(x['item_id'])}' width='320'>" if x["img"]
               else f"<p class='muted'>{e(x['why'])}</p>")
        rej_html.append(
            f"<div class='rejected {e(x['status'])}'><div>{pic}</div><div><p><b>{e(x['stage'])} · "
            f"{e(x['reason'])}</b> — {x['count']} item{'s' if x['count'] != 1 else ''} ({e(x['status'])})</p>"
            f"<p>e.g. <code>{e(x['item_id'])}</code>: {e(x['detail']) or '(no detail)'}</p></div></div>")
    fig = lambda k, alt: f"<img src='{e(imgs[k])}' alt='{e(alt)}'>"  # noqa: E731
    previews = sum(1 for c in cards if c["preview"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(meta['name'])}: dataset report</title>
<style>{CSS}</style></head><body>
<h1>{e(meta['name'])}</h1>
<p>{meta['total']['samples']} samples, {meta['total']['frames']} frames, code space <code>{e(meta['code_space'])}</code>
(D = {meta['D']}), median {meta['fps']:g} fps.</p>
<nav><a href="#run">run</a><a href="#funnel">funnel</a><a href="#timing">text and timing</a><a href="#samples">samples</a><a href="#rejected">rejected</a>
<a href="#distributions">distributions</a><a href="#lengths">lengths</a><a href="#dims">dimensions</a></nav>
{warn}
<section id="run"><h2>Run</h2><table class="run-metadata">{meta_html}</table></section>
<section id="funnel"><h2>Funnel per source</h2>
<p class="muted">Inputs are what a source lists (files, table rows, videos): ok / skipped / failed at ingest.
Every later column counts utterance segments.</p>
<table class="funnel-by-source"><tr><th>source</th><th>inputs ok / skipped / failed</th><th>segments</th>
<th>with a face</th><th>with codes</th><th>kept</th></tr>{src_rows}</table>
{f"<img src='{e(sources_png)}' alt='segments per source surviving each stage'>" if sources_png else ''}
<h3>Per stage and reason</h3>
{f"<img src='{e(funnel_png)}' alt='records per stage and reason'>" if funnel_png else ''}
<table class="funnel"><tr><th>stage</th><th>status</th><th>reason</th><th>count</th></tr>{funnel_rows}</table></section>
<section id="splits"><h2>Splits</h2><table><tr><th>split</th><th>samples</th><th>frames</th><th>videos</th></tr>{rows}</table></section>
<section id="timing"><h2>Text and timing</h2>
<p class="muted">Where each text came from (captions, corpus, table, or transcribed: asr) and each span (as
given, aligned to where its words are said, or from the transcribed words).</p>{timing}</section>
<section id="samples"><h2>Sample utterances</h2>
<p class="muted">Kept faces with their box and landmarks; for clips with several faces, the whole frame and
which face was kept; {previews} animated preview{'s' if previews != 1 else ''} of the first seconds beside the code curves.</p>
{''.join(sample_html) or '<p>No samples.</p>'}</section>
<section id="rejected"><h2>Rejected, by reason</h2>{''.join(rej_html) or '<p>Nothing was rejected.</p>'}</section>
<section id="distributions"><h2>Face and validity distributions</h2>{fig('dist', 'distributions of face size, yaw, pitch, sharpness, coverage and valid ratio')}</section>
<section id="lengths"><h2>Lengths</h2>{fig('frames', 'histogram of sequence lengths in frames')}
{fig('duration', 'histogram of durations in seconds')}{fig('words', 'histogram of text lengths in words')}
{fig('coverage', 'histogram of utterance coverage') if 'coverage' in imgs else ''}</section>
<section id="dims"><h2>Per-dimension statistics</h2>{fig('dims', 'per-dimension mean and standard deviation')}</section>
</body></html>
"""
