"""The visual report: report.html plus report/*.png (matplotlib Agg), readable offline.

The HTML references only its own PNGs by relative path (no scripts, no external URLs), so it opens
from a release folder, a tarball or a bucket listing alike."""
from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.formats.dataset import SPLITS
from pipeline.atomic import atomic_path, write_text
from pipeline.formats.track import has_track, read_track

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
    order = ["ingest", "faces", "expressions", "assemble", "release"]
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


def make_thumbnail(video_path: str, start: float, end: float, faces_dir: str, size: int, dest: Path) -> str:
    """Decode the middle frame of the segment and crop the tracked face (×1.5 its box)."""
    from PIL import Image

    from pipeline.media import decode

    mid = start + 0.5 * (end - start)
    frame, scale = None, 1.0
    for batch in decode(video_path, start=mid, end=min(end, mid + 1.0), fps=1, max_side=640):
        if len(batch.frames):
            frame, scale = batch.frames[0], batch.scale
            break
    if frame is None:
        raise RuntimeError(f"no frame decoded at {mid:.2f} s of {video_path}")
    if faces_dir and has_track(faces_dir):
        z = read_track(faces_dir, keys=("box", "valid"))
        t, box, valid = z["t"], z["box"], z["valid"].astype(bool)
        if len(t):
            cand = np.flatnonzero(valid) if valid.any() else np.arange(len(t))
            i = cand[np.argmin(np.abs(t[cand] - (mid - start)))]
            x0, y0, x1, y1 = (box[i].astype(float) * scale)
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
            h, w = frame.shape[:2]
            a, b = int(max(0, cx - half)), int(max(0, cy - half))
            c, d = int(min(w, cx + half)), int(min(h, cy + half))
            if c - a >= 4 and d - b >= 4:
                frame = frame[b:d, a:c]
    img = Image.fromarray(np.ascontiguousarray(frame))
    img.thumbnail((size, size))
    with atomic_path(dest) as tmp:
        img.save(tmp, format="PNG")
    return f"report/{dest.name}"


def pick_samples(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """k samples spread evenly over the canonical order (deterministic)."""
    if k <= 0 or df.empty:
        return df.iloc[:0]
    idx = np.unique(np.linspace(0, len(df) - 1, num=min(k, len(df))).round().astype(int))
    return df.iloc[idx]


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}.sample{border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.8em 0;
display:flex;gap:1em;align-items:flex-start}.sample .thumb{flex:0 0 auto}.warn{color:#a33}code{background:#f5f5f5}"""


def write_report(out: Path, meta: dict, df: pd.DataFrame, cfg, media: dict | None = None,
                 thumbs_from: Path | None = None, log: logging.Logger | None = None) -> Path:
    """Write `out/report.html` and `out/report/*.png`. `media` maps sample_id → (video_path, start, end,
    faces_dir) for thumbnails; `thumbs_from` is a dataset folder whose thumbnails may be reused."""
    from pipeline.formats.dataset import split_order

    log = log or logging.getLogger("wordsmile")
    out = Path(out)
    rd = out / "report"
    rd.mkdir(parents=True, exist_ok=True)
    df = split_order(df)
    dims = list(meta["dims"])
    imgs = {
        "frames": _hist(df, "n_frames", "sequence length", "frames", rd / "hist_frames.png",
                        vline=cfg.max_frames, discrete=True),
        "duration": _hist(df, "duration", "duration", "seconds", rd / "hist_duration.png"),
        "words": _hist(df.assign(words_n=[len(str(t).split()) for t in df["text"]]), "words_n", "text length",
                       "words", rd / "hist_words.png", vline=cfg.max_words, discrete=True),
        "dims": _dim_stats(df, dims, rd / "dim_stats.png"),
    }
    if "coverage" in df.columns:
        imgs["coverage"] = _hist(df, "coverage", "coverage of the utterance by the sample's frames", "share",
                                 rd / "hist_coverage.png")
    funnel_png = _funnel(meta.get("funnel", []), rd / "funnel.png")
    cards = []
    for i, r in enumerate(pick_samples(df, cfg.report_samples).itertuples(index=False)):
        sid = r.sample_id
        curve = _curves(np.asarray(r.codes), float(r.fps), dims, f"{sid} ({r.split}, {r.n_frames} frames)",
                        rd / f"curves_{i}.png")
        thumb, why = None, ""
        dest = rd / f"thumb_{sid}.png"
        old = Path(thumbs_from) / "report" / f"thumb_{sid}.png" if thumbs_from else None
        if old is not None and old.is_file():
            with atomic_path(dest) as tmp:
                tmp.write_bytes(old.read_bytes())
            thumb = f"report/{dest.name}"
        elif cfg.thumbnails and media and sid in media and media[sid][0]:
            try:
                thumb = make_thumbnail(*media[sid], cfg.thumbnail_size, dest)
            except Exception as e:  # thumbnails are a courtesy: a missing video must not fail a build
                why = f"no thumbnail ({type(e).__name__}: {str(e)[:120]})"
                log.warning("report thumbnail for %s: %s", sid, why)
        else:
            why = "no thumbnail (source video not available)" if cfg.thumbnails else ""
        cards.append((r, curve, thumb, why))
    write_text(out / "report.html", _html(meta, imgs, funnel_png, cards))
    return out / "report.html"


def _html(meta: dict, imgs: dict, funnel_png: str | None, cards: list) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{s}</td><td>{c['samples']}</td><td>{c['frames']}</td><td>{c['videos']}</td></tr>"
                   for s, c in meta["counts"].items())
    warn = "".join(f"<p class='warn'>⚠ {e(w)}</p>" for w in meta.get("warnings", []))
    funnel_rows = "".join(f"<tr><td>{e(r['stage'])}</td><td>{e(r['status'])}</td><td>{e(r['reason'])}</td>"
                          f"<td>{r['count']}</td></tr>" for r in meta.get("funnel", []))
    sample_html = []
    for r, curve, thumb, why in cards:
        c = getattr(r, "coverage", None)
        cov = f" · covers {c:.0%} of the utterance" if c is not None and c == c else ""
        t = (f"<img class='thumb' src='{e(thumb)}' alt='face of {e(r.sample_id)}' width='160'>" if thumb
             else f"<p><i>{e(why)}</i></p>" if why else "")
        sample_html.append(
            f"<div class='sample'>{t}<div><p><b>{e(r.text)}</b></p><p>{e(r.sample_id)} · {e(r.split)} · "
            f"{e(r.source_id)}/{e(r.video_id)} · {r.start:.2f}–{r.end:.2f} s · {r.n_frames} frames @ "
            f"{r.fps:g} fps{cov}</p><img src='{e(curve)}' alt='code curves of {e(r.sample_id)}'></div></div>")
    fig = lambda k, alt: f"<img src='{e(imgs[k])}' alt='{e(alt)}'>"  # noqa: E731
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(meta['name'])}: dataset report</title>
<style>{CSS}</style></head><body>
<h1>{e(meta['name'])}</h1>
<p>Code space <code>{e(meta['code_space'])}</code>, D = {meta['D']}, median {meta['fps']:g} fps,
{meta['total']['samples']} samples, {meta['total']['frames']} frames, config <code>{e(meta['config_hash'])}</code>.</p>
{warn}
<h2>Splits</h2><table><tr><th>split</th><th>samples</th><th>frames</th><th>videos</th></tr>{rows}</table>
<h2>Lengths</h2>{fig('frames', 'histogram of sequence lengths in frames')}
{fig('duration', 'histogram of durations in seconds')}{fig('words', 'histogram of text lengths in words')}
{fig('coverage', 'histogram of utterance coverage') if 'coverage' in imgs else ''}
<h2>Per-dimension statistics</h2>{fig('dims', 'per-dimension mean and standard deviation')}
<h2>Sample utterances</h2>{''.join(sample_html) or '<p>No samples.</p>'}
<h2>Rejection funnel</h2>{f"<img src='{e(funnel_png)}' alt='records per stage and reason'>" if funnel_png else ''}
<table><tr><th>stage</th><th>status</th><th>reason</th><th>count</th></tr>{funnel_rows}</table>
</body></html>
"""
