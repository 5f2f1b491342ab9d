"""Expression-backend throughput.

flame53: frames/s of our EMOCA v2 encoders (DECA coarse + EMOCA expression ResNet-50s) at a batch
size, on the CPU or a GPU (bf16/fp16 autocast + channels-last on CUDA). Self-contained: without
--emoca it writes a random-weight checkpoint in EMOCA's exact format to a temporary folder first, so
it runs unchanged on a fresh GPU machine. Two figures: `network` (crops already on the device, what
the >= 1,000 frames/s goal on an H100 refers to) and `end_to_end` (uint8 crops from host memory
through EmocaModel.predict, numpy out).

arkit52 (--arkit): the faces stage vs the expressions stage on a generated sample clip, i.e. what
reusing the face pass' blendshapes adds to it (goal < 5 %).

    python benchmarks/bench_expressions.py                      # CPU (or GPU when present), batch 64
    python benchmarks/bench_expressions.py --device cuda --precision bf16 --iters 50
    python benchmarks/bench_expressions.py --arkit              # also the arkit52 overhead

Prints one JSON object per measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_flame53(args) -> list[dict]:
    import numpy as np
    import torch

    from extract.expressions.emoca import load_emoca, resolve_device, write_random_emoca_folder

    tmp = None
    folder = args.emoca
    if not folder:
        tmp = tempfile.TemporaryDirectory(prefix="emoca-bench-")
        folder = Path(tmp.name) / "EMOCA_v2_random"
        write_random_emoca_folder(folder, jaw=True, global_pose=False)
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    m = load_emoca(folder, dev, channels_last=args.channels_last)
    load_s = time.perf_counter() - t0
    if args.threads and dev.type == "cpu":
        torch.set_num_threads(args.threads)
    iters = args.iters or (3 if dev.type == "cpu" else 30)
    warmup = args.warmup if args.warmup >= 0 else (1 if dev.type == "cpu" else 5)
    B = args.batch
    crops = np.random.default_rng(0).integers(0, 256, (B, 224, 224, 3), dtype=np.uint8)
    base = {"backend": "flame53", "device": str(dev), "batch": B, "iters": iters,
            "precision": args.precision if dev.type == "cuda" else "fp32",
            "channels_last": bool(args.channels_last and dev.type == "cuda"), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "random_weights": not args.emoca, "load_s": round(load_s, 2)}
    if dev.type == "cuda":
        base["gpu"] = torch.cuda.get_device_name(dev)
    results = []

    # network only: a device tensor in [0, 1], as predict() builds it
    x = torch.from_numpy(crops).to(dev).permute(0, 3, 1, 2).float().div(255)
    if base["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision) if dev.type == "cuda" else None
    net = m.net
    if args.compile:
        net = torch.compile(net, mode="max-autotune-no-cudagraphs")
    with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=amp is not None):
        for _ in range(warmup):
            net(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            net(x)
        _sync(dev)
        dt = time.perf_counter() - t0
    results.append({**base, "measure": "network", "compile": args.compile,
                    "frames_per_s": round(B * iters / dt, 1), "ms_per_batch": round(1000 * dt / iters, 2)})

    # end to end: host uint8 crops -> codes in numpy
    m.predict(crops, B, args.precision, args.channels_last)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        m.predict(crops, B, args.precision, args.channels_last)
    _sync(dev)
    dt = time.perf_counter() - t0
    results.append({**base, "measure": "end_to_end", "frames_per_s": round(B * iters / dt, 1),
                    "ms_per_batch": round(1000 * dt / iters, 2)})
    if dev.type == "cuda":
        results[-1]["max_mem_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    if tmp is not None:
        tmp.cleanup()
    return results


def bench_arkit(args) -> dict:
    """faces stage vs expressions stage (arkit52, cache miss) on one generated talking clip."""
    from extract.expressions.stage import EXPRESSIONS
    from extract.faces.stage import FACES
    from pipeline.stage import run_item
    from testdata.samplegen import make_sample
    from pipeline.config import load_config
    from pipeline.context import StageContext
    from pipeline.hashing import file_hash
    from pipeline.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="arkit-bench-") as d:
        d = Path(d)
        sample = Path(args.sample) if args.sample else d / "sample"
        make_sample(sample, parts=["folder"])
        clip = sample / "folder" / "talk_01.mp4"
        sig = json.loads(clip.with_suffix(".signals.json").read_text())
        s = sig["sentences"][0]
        seg = {"segment_id": "bench", "video_path": str(clip), "video_hash": file_hash(clip),
               "start": s["start"], "end": s["end"]}
        ws = Workspace(d / "ws")
        ctx = StageContext(cfg=load_config(), ws=ws, run_dir=ws.new_run_dir())
        t0 = time.perf_counter()
        frec = run_item(FACES, seg, ctx)
        faces_s = time.perf_counter() - t0
        if not frec.ok:
            raise SystemExit(f"faces stage did not keep a face: {frec.reason} {frec.detail}")
        times = []
        for i in range(args.arkit_repeats):  # each run a miss: force a fresh entry
            ctx.force = {"expressions"}
            t0 = time.perf_counter()
            rec = run_item(EXPRESSIONS, {**seg, "faces_dir": frec.output}, ctx)
            times.append(time.perf_counter() - t0)
            assert rec.ok, rec.detail
        expr_s = sorted(times)[len(times) // 2]
        return {"backend": "arkit52", "measure": "stage_overhead", "frames": rec.figures["n_frames"],
                "faces_stage_s": round(faces_s, 3), "expressions_stage_s": round(expr_s, 4),
                "overhead_pct": round(100 * expr_s / faces_s, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emoca", default="", help="an EMOCA v2 model folder (default: random weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=0, help="timed batches (default 3 on CPU, 30 on CUDA)")
    ap.add_argument("--warmup", type=int, default=-1, help="untimed batches (default 1 on CPU, 5 on CUDA)")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the network (CUDA)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    ap.add_argument("--arkit", action="store_true", help="also measure the arkit52 overhead on the faces stage")
    ap.add_argument("--arkit-only", action="store_true")
    ap.add_argument("--arkit-repeats", type=int, default=5)
    ap.add_argument("--sample", default="", help="existing generated sample folder for --arkit")
    args = ap.parse_args(argv)
    if not args.arkit_only:
        for r in bench_flame53(args):
            print(json.dumps(r), flush=True)
    if args.arkit or args.arkit_only:
        print(json.dumps(bench_arkit(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
