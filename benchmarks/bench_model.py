"""Model-stage benchmark. Prints JSON.

Quality (issue 17): on the synthetic two-mode set (model/synthetic.py) and on a built dataset
(`--demo DATASET`, e.g. the sample build): active latent dims, multimodality of samples against the
data's, texts generated in both modes (two-mode set), length error, and the paper-protocol PPL (with
a mean-frame predictor's PPL beside it, to show the σ/δ do not saturate).
Speed: training steps/s and frames/s (small preset on CPU; paper preset too on CUDA), sampling
frames/s with incremental decoding, continuous-PPL time, closed form against scipy's numerical CDF.

    python benchmarks/bench_model.py --demo /tmp/ws17/datasets/sample   # CPU: small preset
    python benchmarks/bench_model.py --device cuda --amp-dtype fp16     # also the paper preset
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
from model.cteg import cteg_loss, loss_weights  # noqa: E402
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


def bench_train(preset: str, device: torch.device, cache: TextStateCache, rng, steps: int, D: int = 53,
                amp_dtype: str = "bf16"):
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
    dt = torch.float16 if amp_dtype == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dt == torch.float16)
    w = loss_weights(D, [50, 51, 52], 5.0)
    n_params = sum(q.numel() for q in model.parameters())

    def step(i):
        idx = rng.choice(len(texts), B, replace=False)
        x, m, t, tm = (a.to(device) for a in collate([codes[j] for j in idx], [states[j] for j in idx], p["max_frames"]))
        for g in opt.param_groups:
            g["lr"] = noam_lr(i + 1, p["d_model"], p["warmup_steps"], p["lr_mul"])
        with torch.autocast(device.type, dtype=dt, enabled=amp):
            out = model(x, m, t, tm)
        loss, _ = cteg_loss(out, x, m, w)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        scaler.step(opt)
        scaler.update()
        return m.sum()

    for i in range(3):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, frames = time.perf_counter(), 0
    for i in range(steps):
        frames = frames + step(i)  # a device tensor: no host sync inside the timed loop
    if device.type == "cuda":
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    res = {"preset": preset, "batch_size": B, "params": n_params, "steps": steps, "steps_per_s": round(steps / el, 2),
           "ms_per_step": round(1000 * el / steps, 1), "frames_per_s": round(int(frames) / el, 1),
           "amp": amp_dtype if amp else "fp32"}
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


def _quality(run_dir: Path, dataset: Path, cfg: ModelConfig, n: int, two_mode: bool) -> dict:
    """Train, then sample n per text of the test split and score what issue 17 asks for."""
    from collections import defaultdict

    from model.data import load_split
    from model.sample import Generator
    from model.synthetic import both_modes, load_modes
    from model.train import train

    t0 = time.perf_counter()
    res = train(dataset, run_dir, cfg, device="cpu", progress=False, tensorboard=False, resume=False)
    train_s = time.perf_counter() - t0
    gen = Generator.load(run_dir / "best.pt", "cpu")
    test = load_split(dataset, "test", D=gen.info.D)
    train_split = load_split(dataset, "train", D=gen.info.D)
    by_text = defaultdict(list)
    for s in train_split + test:
        by_text[s.text].append(s.codes)
    texts = list(dict.fromkeys(s.text for s in test))
    gens = gen.sample(texts, n=n, seed=0, min_frames=4)
    sigma, delta = metrics.ppl_sigma_delta(gen.info.code_space)
    reals = [s.codes for s in test]
    tf = gen.teacher_forced([s.text for s in test], reals, seed=0)
    bos = gen.info.mean.astype(np.float64)
    mean_pred = [np.repeat(bos[None], len(r) + 1, 0) for r in reals]
    gen_len = np.array([np.mean([len(g) for g in gl]) for gl in gens])
    real_len = np.array([np.mean([len(c) for c in by_text[t]]) for t in texts])
    out = {"dataset": str(dataset), "steps": res["steps"], "train_s": round(train_s, 1), "params": res["params"],
           "dev_kl_nats_per_dim": round(res["dev_kl"], 4), "active_latent_dims": res["dev_active_dims"],
           "d_latent": gen.model.cfg.d_latent, "latent": gen.model.cfg.latent,
           "texts": len(texts), "samples_per_text": n,
           "multimodality_samples": round(metrics.multimodality(gens), 4),
           "multimodality_data": round(metrics.multimodality([by_text[t] for t in texts]), 4),
           "diversity_samples": round(metrics.diversity([g for gl in gens for g in gl]), 4),
           "diversity_data": round(metrics.diversity(reals), 4),
           "length_mean_gen": round(float(gen_len.mean()), 2), "length_mean_real": round(float(real_len.mean()), 2),
           "length_error_mean": round(float(gen_len.mean() / real_len.mean() - 1), 4),
           "length_error_per_text_mean_abs": round(float(np.mean(np.abs(gen_len / real_len - 1))), 4),
           "ppl_sigma_delta": [sigma, delta],
           "ppl_paper": round(metrics.paper_ppl(tf, reals, bos, sigma, delta, gen.max_frames), 4),
           "ppl_paper_mean_frame_predictor": round(metrics.paper_ppl(mean_pred, reals, bos, sigma, delta), 4)}
    if two_mode:
        out["texts_in_both_modes"] = both_modes(gens, texts, load_modes(dataset))
    return out


def bench_quality(args, tmp: Path) -> dict:
    from model.synthetic import make_two_mode

    res = {}
    two = make_two_mode(tmp / "two-mode", n_texts=8, per_text=6)
    cfg = ModelConfig(preset="small", seed=0, threads=args.threads, eval_every=100, text_cache=str(tmp / "tc"),
                      max_steps=args.quality_steps, lr_mul=0.5, warmup_steps=50, kl_anneal_steps=100)
    res["two_mode"] = _quality(tmp / "run-two", two, cfg, 10, True)
    if args.demo:
        cfg = ModelConfig(preset="small", seed=0, threads=args.threads, eval_every=100, text_cache=str(tmp / "tc"),
                          max_steps=args.demo_steps)
        res["demo"] = _quality(tmp / "run-demo", Path(args.demo).resolve(), cfg, 10, False)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per preset")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--presets", default=None, help="comma list (default: small on CPU, small,paper on CUDA)")
    ap.add_argument("--amp-dtype", default="bf16", choices=["bf16", "fp16"], help="mixed precision on CUDA")
    ap.add_argument("--demo", default=None, help="built dataset folder for the quality figures (e.g. the sample build)")
    ap.add_argument("--demo-steps", type=int, default=300, help="training steps on --demo (a step count, not minutes: "
                    "the figures should not depend on the machine's load)")
    ap.add_argument("--quality-steps", type=int, default=400, help="training steps on the two-mode set (as its test)")
    ap.add_argument("--no-quality", action="store_true", help="speed figures only")
    ap.add_argument("--no-speed", action="store_true", help="quality figures only")
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
        for preset in ([] if args.no_speed else wanted):
            r, model, states = bench_train(preset, device, cache, rng, args.steps, amp_dtype=args.amp_dtype)
            res["train"].append(r)
            res["sample"][preset] = bench_sample(model, states, device)
        if not args.no_quality:
            res["quality"] = bench_quality(args, Path(tmp))
    if not args.no_speed:
        res["ppl"] = bench_ppl(rng)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
