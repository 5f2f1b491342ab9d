"""Face stage throughput and memory (issue 4 benchmark).

    python benchmarks/bench_faces.py                 # 10-minute 720p clip, 60 s throughput spans
    python benchmarks/bench_faces.py --minutes 2 --seconds 30 --json out.json

    python benchmarks/bench_faces.py --fidelity --real /tmp/fr --flame53 --skip-memory --skip-workers
    python benchmarks/bench_faces.py --minutes 1 --seconds 30 --landmarker-seconds 10 --rounds 3 --skip-memory

Figures, all from one run:
  decode      frames/s of pipeline.media.decode alone (25 fps, longest side 640)
  landmarker  frames/s of the crop landmarker alone on frames decoded beforehand (boxes known), as
              the stage had it before issue 19: mediapipe's public Python API, IMAGE mode (the baseline)
  stage       frames/s of extract.faces.stage.analyse (decode + cuts + detector + tracker + landmarker),
              once per faces.landmark_mode (direct = default, image, video); the baseline and the
              stages take turns for --rounds rounds and ratio = stage / baseline per core, of the sums
  fidelity    (--fidelity) analyse() per mode vs the baseline landmarker on generated clips and, with
              --real, on clips panned/zoomed over the face_recognition sdist's photographs: landmark
              distance (original px) and blendshape differences on frames both tracked; and
              direct:k (faces.landmark_every = k) vs direct on every frame
  identity    the identity check alone: ms per tracked frame (signature + jump) on pre-decoded frames
  preroll     the cut detector's pre-roll: CPU per frame over short segments (3 s) with and without it
  memory      peak RSS of a process running analyse() over the whole long clip
  workers     total frames/s with 2 processes vs 1 (each process analyses the same span)
  flame53     (--flame53) EMOCA encoder frames/s on the CPU, fp32 and bf16 (autocast), random weights

"Per core" = frames / CPU seconds (user + system, this process and its ffmpeg children), so the
figure does not depend on how busy the machine's other cores are; wall-clock rates are printed too.
The long clip is the generated 1280x720 talking clip (testdata/samplegen.py, talk_03) looped with
stream copy, so building it costs no encoding.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

REAL_FPS = 25.0


def cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Timer:
    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = cpu_seconds() - self.c0


def make_long_clip(dest: Path, minutes: float, name: str = "talk_03") -> Path:
    from pipeline.media import ffmpeg_exe
    from testdata.samplegen import make_sample

    sample = make_sample(dest.parent / "sample", parts=["folder"])
    src = dest.parent / "sample" / "folder" / f"{name}.mp4"
    dur = next(c["duration"] for c in sample["clips"] if c["path"].endswith(f"{name}.mp4"))
    loops = int(np.ceil(minutes * 60 / dur))
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                    "-i", str(src), "-t", f"{minutes * 60:.3f}", "-c", "copy", str(dest)], check=True)
    return dest


def rate(n: int, t: Timer) -> dict:
    return {"frames": n, "wall_s": round(t.wall, 3), "cpu_s": round(t.cpu, 3),
            "fps_wall": round(n / t.wall, 1), "fps_per_core": round(n / max(t.cpu, 1e-9), 1)}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over fork and
    exec, so a spawned child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_decode(clip: Path, seconds: float, cfg) -> dict:
    from pipeline.media import decode

    n = 0
    with Timer() as t:
        for b in decode(clip, 0.0, seconds, fps=cfg.analysis_fps, max_side=cfg.max_side):
            n += len(b.frames)
    return rate(n, t)


def baseline_landmarker(cfg):
    """The crop landmarker as before issue 19: IMAGE mode through mediapipe's public Python API."""
    from extract.faces.landmarks import CropLandmarker
    from extract.faces.model_files import ensure_models

    paths = ensure_models({"face_landmarker": cfg.landmarker_path, "face_detector_full_range": cfg.detector_path})
    return CropLandmarker(paths["face_landmarker"], cfg.crop_scale, cfg.crop_px, mode="image", direct=False)


def landmarker_input(clip: Path, seconds: float, cfg, lm) -> tuple[np.ndarray, list]:
    """Frames decoded beforehand and the box of each (from the previous frame's landmarks, as the
    tracker gives them), so that the timing holds the landmarker alone."""
    from extract.faces.stage import load_models
    from pipeline.media import decode

    det, _ = load_models(cfg)
    frames = np.concatenate([b.frames for b in decode(clip, 0.0, seconds, fps=cfg.analysis_fps,
                                                      max_side=cfg.max_side)])
    box = det.detect(frames[0])[0]
    boxes = []
    for f in frames:
        r = lm.run(f, box)
        box = r.box if r is not None else box
        boxes.append(box)
    return frames, boxes


def bench_landmarker(frames, boxes, lm) -> dict:
    with Timer() as t:
        for f, b in zip(frames, boxes):
            lm.run(f, b)
    return rate(len(frames), t)


def merged(runs: list) -> dict:
    """Rounds of one measurement summed (frames, CPU, wall), with the per-round CPU rates."""
    n, cpu, wall = (sum(r[k] for r in runs) for k in ("frames", "cpu_s", "wall_s"))
    out = {**runs[-1], "frames": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
           "fps_wall": round(n / wall, 1), "fps_per_core": round(n / max(cpu, 1e-9), 1),
           "rounds_fps_per_core": [r["fps_per_core"] for r in runs]}
    if "ms_cpu_per_frame" in out:
        out["ms_cpu_per_frame"] = round(1000 * cpu / max(n, 1), 2)
    return out


def bench_stage(clip: Path, seconds: float, cfg) -> dict:
    from extract.faces.stage import analyse, load_models

    load_models(cfg)
    with Timer() as t:
        a = analyse(clip, 0.0, seconds, cfg)
    out = rate(a.n, t)
    out["tracks"] = len(a.tracks)
    out["detector_frames"] = a.stats["n_detect"]
    out["ms_cpu_per_frame"] = round(1000 * t.cpu / max(a.n, 1), 2)
    return out


def analyse_with(clip, cfg, landmarker=None):
    """analyse() of the whole clip; with `landmarker`, that one instead of the configured one (the
    stage takes its models from load_models, so it is swapped there for the call)."""
    from extract.faces import stage

    if landmarker is None:
        return stage.analyse(clip, 0.0, None, cfg)
    orig = stage.load_models
    det, _ = orig(cfg)
    stage.load_models = lambda c: (det, landmarker)
    try:
        return stage.analyse(clip, 0.0, None, cfg)
    finally:
        stage.load_models = orig


def compare(a, b) -> dict:
    """Per-frame differences of two analyses of one clip: faces matched by landmark-box IoU >= 0.5."""
    from extract.faces.tracks import iou

    def by_frame(an):
        d: dict = {}
        for tr in an.tracks:
            for k, f in enumerate(tr.frames):
                d.setdefault(f, []).append((tr.boxes[k], tr.landmarks[k], tr.blendshapes[k]))
        return d

    fa, fb = by_frame(a), by_frame(b)
    lm_px, bs_abs, bs_max = [], [], []
    unmatched = 0
    for f, faces in fa.items():
        for box, lm, bs in faces:
            m = max(fb.get(f, []), key=lambda x: iou(box, x[0]), default=None)
            if m is None or iou(box, m[0]) < 0.5:
                unmatched += 1
                continue
            lm_px.append(float(np.linalg.norm((lm[:, :2] - m[1][:, :2]) / a.scale, axis=1).mean()))
            d = np.abs(bs - m[2])
            bs_abs.append(float(d.mean()))
            bs_max.append(float(d.max()))
    n = sum(len(v) for v in fa.values())
    q = lambda x, p: round(float(np.percentile(x, p)), 4) if x else None  # noqa: E731
    return {"faces": n, "unmatched": unmatched, "faces_other": sum(len(v) for v in fb.values()),
            "landmark_px_mean": round(float(np.mean(lm_px)), 3) if lm_px else None,
            "landmark_px_p95": q(lm_px, 95), "blend_abs_mean": round(float(np.mean(bs_abs)), 4) if bs_abs else None,
            "blend_max_abs_p95": q(bs_max, 95), "blend_max_abs_max": round(float(np.max(bs_max)), 4) if bs_max else None}


def make_real_clips(fr: Path, dest: Path) -> list[Path]:
    """4 s 1280x720 clips panning and zooming over the face_recognition 1.3.0 sdist's photographs
    (`pip download --no-deps --no-binary :all: face-recognition==1.3.0 -d DIR`, untarred in DIR)."""
    from pipeline.media import ffmpeg_exe

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for img in sorted(fr.glob("**/tests/test_images/*.jpg")):
        if "partial" in img.name:
            continue
        p = dest / f"{img.stem}.mp4"
        # upscale, then a slow zoom-in with a sideways drift: the face moves and grows every frame
        # (portraits: the whole photo fits the height, padded to 16:9; the zoom heads for the upper third)
        vf = ("scale=-2:1440,pad=2560:1440:(ow-iw)/2:0,"
              "zoompan=z='1.0+0.005*on':x='iw/2-(iw/zoom/2)+3*on':y='ih/3-(ih/zoom/3)':d=100:s=1280x720:fps=25")
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(img), "-vf", vf,
                        "-frames:v", "100", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                        "-pix_fmt", "yuv420p", str(p)], check=True)
        out.append(p)
    return out


def against_truth(a, clip) -> dict:
    """Of the track on the driven face (generated clips) or the longest track: Pearson r of blendshapes with the generated clip's driving signals
    (testdata/samplegen.py), or for a still photograph (no signals file) the blendshapes' mean
    per-channel standard deviation over frames (the expression does not change; lower is steadier)."""
    from extract.faces import BLENDSHAPE_INDEX as BI

    from extract.faces.tracks import iou

    if not a.tracks:
        return {}
    sig_path = Path(clip).with_suffix(".signals.json")
    sig = json.loads(sig_path.read_text()) if sig_path.exists() else None

    def on_driven_face(t):   # generated clips: the track on the driven face (face_boxes[k][0]), in frames
        fb = sig["face_boxes"]
        return sum(iou(np.asarray(b) / a.scale, fb[k][0]) > 0.3 for k, b in zip(t.frames, t.boxes)
                   if k < len(fb) and fb[k])

    tr = max(a.tracks, key=on_driven_face if sig else (lambda t: t.n))
    f, bs = np.asarray(tr.frames), np.stack(tr.blendshapes)
    if sig is None:
        return {"blend_std": round(float(bs.std(0).mean()), 4)}
    keep = f < len(sig["mouth_open"])
    f, bs = f[keep], bs[keep]
    r = lambda x, k: round(float(np.corrcoef(x, np.asarray(sig[k])[f])[0, 1]), 3)  # noqa: E731
    return {"r_jaw_mouth": r(bs[:, BI["jawOpen"]], "mouth_open"),
            "r_smile": r(bs[:, [BI["mouthSmileLeft"], BI["mouthSmileRight"]]].mean(1), "smile"),
            "r_brow": r(bs[:, BI["browInnerUp"]], "brow_raise")}


def mode_cfg(cfg, mode: str):
    """faces config for a mode name: "direct", "image", "video", or "direct:k" (landmark_every = k)."""
    name, _, every = mode.partition(":")
    return cfg.model_copy(update={"landmark_mode": name, "landmark_every": int(every or 1)})


def bench_fidelity(clips: list, cfg, base_lm, every=(2, 3)) -> dict:
    """Per clip: each mode against the baseline landmarker (and the truth), and direct with
    landmark_every = k against direct on every frame (the fidelity cost of landmarking fewer frames)."""
    res = {}
    for clip in clips:
        ref = analyse_with(clip, cfg, base_lm)
        row = {"baseline": against_truth(ref, clip)}
        for mode in ("direct", "image", "video"):
            a = analyse_with(clip, mode_cfg(cfg, mode))
            row[mode] = {**compare(ref, a), **against_truth(a, clip)}
            if mode == "direct":
                every1 = a
        for k in every:
            a = analyse_with(clip, mode_cfg(cfg, f"direct:{k}"))
            row[f"direct:{k}"] = {**compare(every1, a), **against_truth(a, clip)}
        res[Path(clip).name] = row
        print("fidelity   ", Path(clip).name, row, flush=True)
    return res


def bench_flame53(batch: int = 8, iters: int = 2) -> dict:
    """EMOCA encoders (DECA coarse + expression ResNet-50s, random weights in EMOCA's format) on the
    CPU: frames/s in fp32 and under bf16 autocast."""
    import torch

    from extract.expressions.emoca import load_emoca, write_random_emoca_folder

    out = {"device": "cpu", "batch": batch, "iters": iters, "threads": torch.get_num_threads(),
           "gpu": "none lent to this run" if not torch.cuda.is_available() else torch.cuda.get_device_name()}
    with tempfile.TemporaryDirectory(prefix="emoca-bench-") as td:
        folder = Path(td) / "EMOCA_v2_random"
        write_random_emoca_folder(folder, jaw=True, global_pose=False)
        m = load_emoca(folder, torch.device("cpu"), channels_last=False)
        x = torch.rand(batch, 3, 224, 224)
        for name, dt in (("fp32", None), ("bf16", torch.bfloat16)):
            with torch.inference_mode(), torch.autocast("cpu", dtype=dt or torch.bfloat16, enabled=dt is not None):
                m.net(x)
                t0 = time.perf_counter()
                for _ in range(iters):
                    m.net(x)
                out[f"{name}_frames_per_s"] = round(batch * iters / (time.perf_counter() - t0), 2)
    return out


def bench_stage_off(clip: Path, seconds: float, cfg) -> dict:
    """The whole stage with the identity check off (its cost is the difference to `stage`)."""
    return bench_stage(clip, seconds, cfg.model_copy(update={"identity_max_jump": 0.0}))


def bench_identity(clip: Path, seconds: float, cfg) -> dict:
    """signature() + IdentityCheck.jump() per tracked frame, timed alone on frames decoded beforehand."""
    from extract.faces.identity import IdentityCheck, signature
    from extract.faces.stage import load_models
    from pipeline.media import decode

    det, lm = load_models(cfg)
    frames = np.concatenate([b.frames for b in decode(clip, 0.0, seconds, fps=cfg.analysis_fps,
                                                      max_side=cfg.max_side)])
    box, lms = det.detect(frames[0])[0], []
    for f in frames:
        r = lm.run(f, box)
        if r is not None:
            box = r.box
        lms.append(r.landmarks if r is not None else lms[-1])
    ic = IdentityCheck()
    with Timer() as t:
        for f, x in zip(frames, lms):
            sig = signature(f, x)
            ic.jump(sig)
            ic.add(sig)
    out = rate(len(frames), t)
    out["ms_per_frame_cpu"] = round(1000 * t.cpu / len(frames), 3)
    return out


def bench_preroll(clip: Path, cfg, n_segments: int = 12, seg_s: float = 3.0) -> dict:
    """CPU per analysed frame over short segments with the pre-roll (default) and without it, the two
    alternating segment by segment so a busy neighbour weighs on both alike."""
    from extract.faces.stage import analyse, load_models

    load_models(cfg)
    ks = (cfg.shot_preroll_frames, 0)
    acc = {k: [0, 0.0, 0.0] for k in ks}     # frames, cpu, wall
    for j in range(n_segments):
        for k in (ks if j % 2 == 0 else ks[::-1]):
            c = cfg.model_copy(update={"shot_preroll_frames": k})
            with Timer() as t:
                a = analyse(clip, 1.0 + j * seg_s, 1.0 + (j + 1) * seg_s, c)
            acc[k][0] += a.n
            acc[k][1] += t.cpu
            acc[k][2] += t.wall
    out = {}
    for k, (n, cpu, wall) in acc.items():
        out[f"preroll_{k}"] = {"frames": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                               "fps_per_core": round(n / max(cpu, 1e-9), 1)}
    on, off = out[f"preroll_{ks[0]}"], out["preroll_0"]
    out["cost_ms_per_frame_cpu"] = round(1000 * (on["cpu_s"] / on["frames"] - off["cpu_s"] / off["frames"]), 3)
    out["segments"], out["segment_s"] = n_segments, seg_s
    return out


def _memory_child(clip: str, q) -> None:
    from extract.faces.stage import analyse, evaluate
    from pipeline.config import load_config

    from extract.faces.stage import load_models

    cfg = load_config().faces
    load_models(cfg)
    base = peak_rss_mb()   # imports + models
    with Timer() as t:
        a = analyse(clip, 0.0, None, cfg)
        evaluate(a, cfg, None)
    q.put({**rate(a.n, t), "peak_rss_mb": round(peak_rss_mb(), 1),
             "rss_after_model_load_mb": round(base, 1)})


def _worker(clip: str, seconds: float, ready, go, results) -> None:
    from extract.faces.stage import analyse, load_models
    from pipeline.config import load_config

    cfg = load_config().faces
    load_models(cfg)           # model loading is not part of the throughput
    ready.put(os.getpid())
    go.wait()                  # start together
    a = analyse(clip, 0.0, seconds, cfg)
    results.put(a.n)


def bench_workers(clip: Path, seconds: float, k: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=_worker, args=(str(clip), seconds, ready, go, results)) for _ in range(k)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=300)
    w0 = time.perf_counter()
    go.set()
    n = sum(results.get(timeout=1800) for _ in ps)
    wall = time.perf_counter() - w0
    for p in ps:
        p.join()
    return {"workers": k, "frames": n, "wall_s": round(wall, 3), "fps_wall": round(n / wall, 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, help="a video to use instead of the generated long clip")
    ap.add_argument("--sample-clip", default="talk_03",
                    help="generated clip to loop: talk_03 (1280x720, decoded and downscaled) or talk_01 (640x360)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated 720p clip")
    ap.add_argument("--seconds", type=float, default=60.0, help="span for the throughput figures")
    ap.add_argument("--landmarker-seconds", type=float, default=20.0, help="frames held in memory for it")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-preroll", action="store_true")
    ap.add_argument("--fidelity", action="store_true", help="results of each landmark_mode vs the baseline")
    ap.add_argument("--real", type=Path, help="folder holding the untarred face_recognition 1.3.0 sdist")
    ap.add_argument("--flame53", action="store_true", help="also EMOCA encoder frames/s on the CPU")
    ap.add_argument("--modes", default="direct,image,video",
                    help="landmark modes to time the stage in; direct:k = direct with faces.landmark_every k")
    ap.add_argument("--rounds", type=int, default=3, help="turns of baseline and stages (ratios from their sums)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from pipeline.config import load_config

    cfg = load_config().faces
    with tempfile.TemporaryDirectory(prefix="bench-faces-") as td:
        clip = args.clip or make_long_clip(Path(td) / "long.mp4", args.minutes, args.sample_clip)
        from pipeline.media import probe

        info = probe(clip)
        res: dict = {"clip": {"path": str(args.clip or "generated"), "duration_s": round(info.duration, 2),
                              "size": [info.width, info.height], "fps": round(info.fps, 3)},
                     "cpu_count": os.cpu_count()}
        res["decode"] = bench_decode(clip, args.seconds, cfg)
        print("decode     ", res["decode"], flush=True)
        base_lm = baseline_landmarker(cfg)
        lm_frames, lm_boxes = landmarker_input(clip, args.landmarker_seconds, cfg, base_lm)
        # the baseline and each mode's stage take turns, round after round, so that a busy spell on
        # a shared machine weighs on all of them alike; ratios are of the sums over the rounds
        modes = args.modes.split(",")
        runs: dict = {"landmarker": [], **{m: [] for m in modes}}
        for k in range(args.rounds):
            runs["landmarker"].append(bench_landmarker(lm_frames, lm_boxes, base_lm))
            for mode in modes:
                runs[mode].append(bench_stage(clip, args.seconds, mode_cfg(cfg, mode)))
            print(f"round {k + 1}/{args.rounds}", {m: r[-1]["fps_per_core"] for m, r in runs.items()}, flush=True)
        del lm_frames
        res["landmarker"] = merged(runs["landmarker"])
        print("landmarker ", res["landmarker"], "(baseline: public API, IMAGE mode)", flush=True)
        res["stage"], res["ratios"] = {}, {}
        lmk = res["landmarker"]["fps_per_core"]
        for mode in modes:
            res["stage"][mode] = merged(runs[mode])
            print("stage      ", mode, res["stage"][mode], flush=True)
            s = res["stage"][mode]["fps_per_core"]
            res["ratios"][mode] = {"stage_vs_baseline_landmarker": round(s / lmk, 3),
                                   "stage_x_realtime_per_core": round(s / REAL_FPS, 2)}
        res["stage_identity_off"] = bench_stage_off(clip, args.seconds, cfg)
        print("stage, identity check off", res["stage_identity_off"], flush=True)
        res["ratios"]["stage_identity_off_vs_baseline_landmarker"] = round(
            res["stage_identity_off"]["fps_per_core"] / lmk, 3)
        res["identity"] = bench_identity(clip, args.landmarker_seconds, cfg)
        print("identity   ", res["identity"], flush=True)
        res["ratios"]["identity_share_of_landmarker"] = round(res["identity"]["ms_per_frame_cpu"] * lmk / 1000, 4)
        if not args.skip_preroll:
            res["preroll"] = bench_preroll(clip, cfg)
            print("preroll    ", res["preroll"], flush=True)
        if args.fidelity:
            from testdata.samplegen import make_sample

            sample = Path(td) / "fid"
            make_sample(sample, parts=["folder"])
            clips = [sample / "folder" / f"{n}.mp4" for n in ("talk_01", "talk_03", "cut", "two_faces")]
            if args.real:
                clips += make_real_clips(args.real, Path(td) / "real")
            res["fidelity"] = bench_fidelity(clips, cfg, base_lm)
        if args.flame53:
            res["flame53"] = bench_flame53()
            print("flame53    ", res["flame53"], flush=True)
        if not args.skip_workers:
            one = bench_workers(clip, args.seconds / 2, 1)
            two = bench_workers(clip, args.seconds / 2, 2)
            res["workers"] = {"one": one, "two": two, "speedup": round(two["fps_wall"] / one["fps_wall"], 2)}
            print("workers    ", res["workers"], flush=True)
        if not args.skip_memory:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=_memory_child, args=(str(clip), q))
            p.start()
            res["memory"] = q.get(timeout=3600)
            p.join()
            print("memory     ", res["memory"], flush=True)
    base_lm.close()
    print("ratios     ", res["ratios"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
