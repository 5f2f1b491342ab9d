"""Model-stage speed: training steps/s and frames/s (small preset on CPU; paper preset too on CUDA),
sampling frames/s with incremental decoding (and how per-frame cost changes with length), and
continuous-PPL evaluation time, closed form against scipy's numerical CDF. Prints JSON.

    python benchmarks/bench_model.py                 # CPU: small preset
    python benchmarks/bench_model.py --device cuda   # also the paper preset (bf16 autocast)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model import metrics, presets  # noqa: E402
from model.cteg import cteg_loss  # noqa: E402
from model.data import Normalizer  # noqa: E402
from model.text import TextEncoder, TextStateCache  # noqa: E402
from model.train import build_model, noam_lr  # noqa: E402
from model.data import DatasetInfo, collate  # noqa: E402
from pipeline.config.model import ModelConfig  # noqa: E402

WORDS = "I you we so really never always happy sad angry what why no yes great terrible love hate this that".split()


def synth(n: int, D: int, rng, tmin=20, tmax=120):
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 12))) + "." for _ in range(n)]
    codes = [rng.normal(0, 1, (int(rng.integers(tmin, tmax)), D)).astype(np.float32) for _ in range(n)]
    return texts, codes


def bench_train(preset: str, device: torch.device, cache: TextStateCache, rng, steps: int, D: int = 53):
    cfg = ModelConfig(preset=preset)
    p = presets.resolve(cfg)
    B = p["batch_size"]
    texts, codes = synth(max(B * 4, 64), D, rng, 20, min(p["max_frames"], 160))
    states = cache.get(texts)
    info = DatasetInfo(Path("."), "bench", "flame53", D, [f"d{i}" for i in range(D)], [50, 51, 52], 25.0, {},
                       np.zeros(D, np.float32), np.ones(D, np.float32))
    torch.manual_seed(0)
    model = build_model(p, info, Normalizer(info.mean, info.std), cache.encoder.dim).to(device)
    opt = torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9, foreach=True)
    amp = device.type == "cuda"
    n_params = sum(q.numel() for q in model.parameters())

    def step(i):
        idx = rng.choice(len(texts), B, replace=False)
        x, m, t, tm = (a.to(device) for a in collate([codes[j] for j in idx], [states[j] for j in idx], p["max_frames"]))
        for g in opt.param_groups:
            g["lr"] = noam_lr(i + 1, p["d_model"], p["warmup_steps"], p["lr_mul"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x, m, t, tm)
        loss, _ = cteg_loss(out, x, m, [50, 51, 52])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return int(m.sum())

    for i in range(3):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, frames = time.perf_counter(), 0
    for i in range(steps):
        frames += step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    res = {"preset": preset, "batch_size": B, "params": n_params, "steps": steps, "steps_per_s": round(steps / dt, 2),
           "ms_per_step": round(1000 * dt / steps, 1), "frames_per_s": round(frames / dt, 1), "amp_bf16": amp}
    return res, model, states


def bench_sample(model, states, device, n_seqs=16, lengths=(50, 200)):
    _, _, txt, tm = collate([np.zeros((1, model.cfg.D), np.float32)] * n_seqs, [states[i % len(states)] for i in range(n_seqs)], 1)
    txt, tm = txt.to(device), tm.to(device)
    model.eval()
    out = {"sequences": n_seqs}
    for L in lengths:
        g = torch.Generator(device=device).manual_seed(0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model.generate(txt, tm, 8, min_frames=8, generator=g)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            seqs = model.generate(txt, tm, L, min_frames=L, generator=g)  # fixed length: the stop cannot fire
            if device.type == "cuda":
                torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        frames = sum(len(s) for s in seqs)
        out[f"len{L}_frames_per_s"] = round(frames / dt, 1)
        out[f"len{L}_ms_per_step"] = round(1000 * dt / L, 2)
    a, b = lengths
    out["per_step_cost_ratio"] = round(out[f"len{b}_ms_per_step"] / out[f"len{a}_ms_per_step"], 2)
    return out


def bench_ppl(rng, D=53, n_seq=40, T=60, scipy_frames=10):
    reals = [rng.normal(0, 0.5, (T, D)) for _ in range(n_seq)]
    preds = [r + rng.normal(0, 0.15, r.shape) for r in reals]
    t0 = time.perf_counter()
    ppl = metrics.continuous_ppl(preds, reals)
    t_closed = time.perf_counter() - t0
    closed_per_frame = t_closed / (n_seq * T)
    # scipy's CDF in D = 53 is slow: time a few frames and compare per frame
    sub_r, sub_p = [reals[0][:scipy_frames]], [preds[0][:scipy_frames]]
    t0 = time.perf_counter()
    ppl_scipy = metrics.continuous_ppl_scipy(sub_p, sub_r)
    t_scipy = time.perf_counter() - t0
    ppl_closed_sub = metrics.continuous_ppl(sub_p, sub_r)
    return {"D": D, "frames": n_seq * T, "closed_s": round(t_closed, 4), "closed_us_per_frame": round(1e6 * closed_per_frame, 2),
            "scipy_frames": scipy_frames, "scipy_s": round(t_scipy, 3),
            "scipy_ms_per_frame": round(1000 * t_scipy / scipy_frames, 2),
            "speedup": round((t_scipy / scipy_frames) / closed_per_frame, 1),
            "ppl": round(ppl, 4), "subset_ppl_closed": ppl_closed_sub, "subset_ppl_scipy": ppl_scipy}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per preset")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--presets", default=None, help="comma list (default: small on CPU, small,paper on CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    wanted = (args.presets or ("small,paper" if device.type == "cuda" else "small")).split(",")
    res = {"device": str(device), "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
           "torch": torch.__version__, "cpu_threads": args.threads, "python": platform.python_version(),
           "train": [], "sample": {}}
    with tempfile.TemporaryDirectory() as tmp:
        enc = TextEncoder("", 64, device=str(device))
        cache = TextStateCache(tmp, enc)
        t0 = time.perf_counter()
        cache.get(synth(64, 1, np.random.default_rng(1))[0])
        res["text_encode_64_texts_s"] = round(time.perf_counter() - t0, 2)
        for preset in wanted:
            r, model, states = bench_train(preset, device, cache, rng, args.steps)
            res["train"].append(r)
            res["sample"][preset] = bench_sample(model, states, device)
    res["ppl"] = bench_ppl(rng)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
