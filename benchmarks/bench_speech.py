"""Speech: accuracy and speed of transcription, utterance edges and alignment on real recorded speech.

The recordings are the pocketsphinx 5.1.1 sdist's LibriVox clips with their reference word alignments
(testdata/speech.py fetches them). Every figure comes from one run of this script, side by side:

- `asr`: WER and real-time factor (audio seconds per CPU-second of one core: one thread, one process)
  for base and tiny.en (int8), on the clips one by one and on one long concatenation (>= 60 s), the
  sequential decoder and the batched pipeline; peak RSS of the process that ran it;
- `edges`: utterance boundary error of the speech stage's utterances against the reference edges
  (first word's start, last word's end), raw Whisper word times vs refined (VAD edges + pad);
- `align`: a known text searched in its span ± 1.5 s with the neighbours' speech in the window, edge
  error of the aligned span and how many gross errors (> 0.5 s) were kept rather than rejected;
- `stage`: the stage's seconds per hour of audio on one core.

    python benchmarks/bench_speech.py                    # everything (~3 min on one core)
    python benchmarks/bench_speech.py --only asr --models base
    python benchmarks/bench_speech.py --device cuda      # on a GPU: float16, batched

Each measurement runs in its own subprocess (so peak RSS is that of one worker) and prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _cfg(model: str, device: str, **kw):
    from pipeline.config import load_config

    sets = [f"speech.model={model}", f"speech.device={device}"] + [f"speech.{k}={v}" for k, v in kw.items()]
    return load_config(None, sets).speech


def _wer(ref: str, hyp: str) -> tuple[int, int]:
    from extract.speech.align import norm_tokens

    r = [t for w in ref.split() for t in norm_tokens(w)]
    h = [t for w in hyp.split() for t in norm_tokens(w)]
    d = np.arange(len(h) + 1, dtype=float)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return int(d[len(h)]), len(r)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _long_track(utts, seconds: float = 75.0):
    from testdata.speech import speech_track

    chosen, total = [], 0.0
    while total < seconds:
        for u in utts:
            chosen.append(u)
            total += u.duration + 1.0
            if total >= seconds:
                break
    return speech_track(chosen, gaps_s=1.0, lead_s=0.5)


def run_asr(model: str, device: str, batched: bool) -> dict:
    """One worker: transcribe every clip, then the long track; WER and RTF per core."""
    from extract.speech import asr
    from testdata.speech import librivox, read_wav

    cfg = _cfg(model, device)
    m = asr.load(cfg)
    if batched and m.batched is None:
        from faster_whisper import BatchedInferencePipeline

        m.batched = BatchedInferencePipeline(m.model)
    utts = librivox()
    errs = n = 0
    audio_s = cpu_s = 0.0
    for u in utts:
        a = read_wav(u.wav)
        c0 = _cpu()
        heard = asr.transcribe(a, cfg)
        cpu_s += _cpu() - c0
        audio_s += len(a) / 16000
        e, k = _wer(u.text, " ".join(w[0] for w in heard.words))
        errs, n = errs + e, n + k
    audio, truth = _long_track(utts)
    c0, w0 = _cpu(), time.monotonic()
    heard = asr.transcribe(audio, cfg)
    long_cpu, long_wall = _cpu() - c0, time.monotonic() - w0
    le, ln = _wer(" ".join(t["text"] for t in truth), " ".join(w[0] for w in heard.words))
    return {"bench": "asr", "model": model, "device": device, "decoder": "batched" if batched else "sequential",
            "label": m.label, "clips": len(utts), "clips_audio_s": round(audio_s, 1),
            "clips_wer": round(errs / max(1, n), 4), "clips_x_realtime_per_core": round(audio_s / cpu_s, 2),
            "long_audio_s": round(len(audio) / 16000, 1), "long_wer": round(le / max(1, ln), 4),
            "long_x_realtime_per_core": round(len(audio) / 16000 / long_cpu, 2),
            "long_x_realtime_wall": round(len(audio) / 16000 / long_wall, 2), "peak_rss_mb": round(_rss_mb())}


def _stage_on(audio: np.ndarray, truth, rows: list[dict] | None, tmp: Path, model: str, device: str):
    """Run ingest + speech on a clip holding `audio` (folder source, or a table of `rows` on it)."""
    import wave

    import yaml

    from pipeline.media import ffmpeg_exe
    from wordsmile.build import Build

    (tmp / "clips").mkdir(parents=True, exist_ok=True)
    wav = tmp / "a.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    clip = tmp / "clips" / "talk.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"color=gray:s=160x120:r=25:d={len(audio) / 16000:.3f}", "-i", str(wav), "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", "-b:a", "96k", str(clip)], check=True)
    if rows is None:
        src = {"id": "talk", "kind": "folder", "path": str(tmp / "clips")}
    else:
        tab = tmp / "t.csv"
        tab.write_text("video,start,end,text\n" + "".join(f"{clip},{r['start']:.3f},{r['end']:.3f},\"{r['text']}\"\n"
                                                          for r in rows))
        src = {"id": "tab", "kind": "table", "path": str(tab)}
    m = tmp / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "b", "sources": [src]}))
    b = Build(m, tmp / "ws", overrides=[f"speech.model={model}", f"speech.device={device}", "orchestration.workers=1"])
    c0 = _cpu()
    b.run(["ingest", "speech"])
    cpu = _cpu() - c0
    df, recs = b.load_state("speech")
    return df, [r for r in recs if r.stage == "speech"], cpu


def run_edges(model: str, device: str, tmp: Path) -> dict:
    """Utterances transcribed from a track of clips with known gaps vs the reference edges."""
    from testdata.speech import librivox

    utts = librivox()
    audio, truth = _long_track(utts, 60.0)
    df, _, cpu = _stage_on(audio, truth, None, tmp, model, device)
    d_start, d_end, raw_start, raw_end = [], [], [], []
    for t in truth:
        mine = df[(df.end > t["start"]) & (df.start < t["end"])]
        if mine.empty:
            continue
        d_start.append(mine.start.min() - t["start"])
        d_end.append(mine.end.max() - t["end"])
        ws = [w for x in mine.words for w in json.loads(x)]
        raw_start.append(ws[0][1] - t["start"])
        raw_end.append(ws[-1][2] - t["end"])
    a = np.abs
    return {"bench": "edges", "model": model, "utterances": len(truth), "found": len(d_start),
            "refined_mean_abs_start_s": round(float(a(d_start).mean()), 3),
            "refined_mean_abs_end_s": round(float(a(d_end).mean()), 3),
            "refined_max_abs_s": round(float(max(a(d_start).max(), a(d_end).max())), 3),
            "words_mean_abs_start_s": round(float(a(raw_start).mean()), 3),
            "words_mean_abs_end_s": round(float(a(raw_end).mean()), 3),
            "stage_cpu_s_per_audio_hour": round(cpu / (len(audio) / 16000) * 3600, 1),
            "peak_rss_mb": round(_rss_mb())}


def run_align(model: str, device: str, tmp: Path) -> dict:
    """Known texts whose spans are off by -1.0..+1.0 s (the window ± 1.5 s holds the neighbours' speech),
    plus each text given on its neighbour's span (must be rejected)."""
    from testdata.speech import librivox

    utts = librivox()
    audio, truth = _long_track(utts, 60.0)
    rng = np.random.default_rng(7)
    rows = []
    for k, t in enumerate(truth):
        off = float(rng.uniform(-1.0, 1.0))
        rows.append({"start": max(0.0, t["start"] + off), "end": t["end"] + off, "text": t["text"], "truth": k})
    for k in range(0, len(truth) - 1, 2):       # the neighbour's line on this span
        t, other = truth[k], truth[k + 1]
        if other["text"] != t["text"]:
            rows.append({"start": t["start"], "end": t["end"], "text": other["text"], "truth": -1})
    df, recs, cpu = _stage_on(audio, truth, rows, tmp, model, device)
    errs, gross_kept, wrong_kept, rejected_right = [], 0, 0, 0
    given = {(round(r["start"], 3), r["text"]): r for r in rows}
    kept = {(round(float(x.given_start), 3), x.text): x for x in df.itertuples()}
    for key, r in given.items():
        x = kept.get(key)
        if r["truth"] < 0:
            wrong_kept += x is not None
            continue
        if x is None:
            rejected_right += 1
            continue
        t = truth[r["truth"]]
        e = max(abs(x.start - t["start"]), abs(x.end - t["end"]))
        errs.append((abs(x.start - t["start"]), abs(x.end - t["end"])))
        gross_kept += e > 0.5
    e = np.asarray(errs)
    return {"bench": "align", "model": model, "given": len(rows), "right_texts": sum(r["truth"] >= 0 for r in rows),
            "aligned": len(errs), "right_texts_rejected": rejected_right,
            "mean_abs_start_s": round(float(e[:, 0].mean()), 3), "mean_abs_end_s": round(float(e[:, 1].mean()), 3),
            "gross_errors_kept": gross_kept, "wrong_texts": sum(r["truth"] < 0 for r in rows),
            "wrong_texts_kept": wrong_kept,
            "stage_cpu_s_per_audio_hour": round(cpu / (len(audio) / 16000) * 3600, 1)}


def _child(args) -> None:
    import tempfile

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as td:
        if args.child == "asr":
            out = run_asr(args.models, args.device, args.batched)
        elif args.child == "edges":
            out = run_edges(args.models, args.device, Path(td))
        else:
            out = run_align(args.models, args.device, Path(td))
    print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["asr", "edges", "align"], action="append")
    p.add_argument("--models", default="base,tiny.en")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    from testdata.speech import librivox

    librivox()   # fetch once, before the workers
    jobs = []
    for what in args.only or ["asr", "edges", "align"]:
        for model in args.models.split(","):
            if what == "asr":
                jobs += [(what, model, False), (what, model, True)]
            elif model == args.models.split(",")[0]:
                jobs.append((what, model, False))
    for what, model, batched in jobs:
        cmd = [sys.executable, __file__, "--child", what, "--models", model, "--device", args.device]
        subprocess.run(cmd + (["--batched"] if batched else []), check=True)


if __name__ == "__main__":
    main()
