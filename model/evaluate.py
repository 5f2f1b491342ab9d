"""Evaluate a checkpoint on a dataset split. Two perplexities, reported apart:
- `ppl_paper`: EmoAva's evaluate.py protocol (teacher-forced, prior latents, `infer_mode p`, position 0
  and the zero EOS frame included), comparable with the paper's figure;
- `ppl_free`: the same formula on a free-running sample against the real sequence (and its true
  ±δ box-probability variant `ppl_free_box`).
Beside them: lm-listener's diversity (random frame pairs) and the same distance between generations
of one text (multimodality, with the real clips' value when texts repeat), the paper's variation,
Fréchet distance, MSE and length statistics. Writes JSON (and the generations as Parquet)."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from model import metrics
from model.data import load_split
from model.sample import Generator, write_generations
from pipeline.atomic import write_json


def evaluate(checkpoint: str | Path, dataset: str | Path | None = None, split: str = "test", n: int = 5,
             seed: int = 0, max_texts: int = 0, temperature: float = 1.0, min_frames: int = 4,
             sigma: float | None = None, delta: float | None = None, fd_normalized: bool = True,
             out_json: str | Path | None = None, generations_out: str | Path | None = None,
             device: str | None = None, stop: str | None = None) -> dict:
    gen = Generator.load(checkpoint, device)
    root = Path(dataset) if dataset else gen.info.root
    samples = load_split(root, split, D=gen.info.D)
    if not samples:
        raise ValueError(f"{root}: split {split!r} is empty")
    if max_texts:
        samples = samples[:max_texts]
    sigma, delta = metrics.ppl_sigma_delta(gen.info.code_space, sigma, delta)
    texts = [s.text for s in samples]
    reals = [s.codes for s in samples]
    t0 = time.time()
    gens = gen.sample(texts, n=n, seed=seed, temperature=temperature, min_frames=min_frames, stop=stop)
    t_gen = time.time() - t0
    first = [g[0] for g in gens]
    flat = [x for g in gens for x in g]
    t1 = time.time()
    tf = gen.teacher_forced(texts, reals, seed=seed)
    ppl_paper = metrics.paper_ppl(tf, reals, gen.info.mean.astype(np.float64), sigma, delta, gen.max_frames)
    t_ppl = time.time() - t1
    by_text = defaultdict(list)
    for t, r in zip(texts, reals):
        by_text[t].append(r)
    scale = gen.norm.std if fd_normalized else np.ones(gen.info.D, np.float32)
    res = {
        "checkpoint": str(checkpoint), "dataset": str(root), "split": split, "texts": len(samples),
        "generations_per_text": n, "seed": seed, "code_space": gen.info.code_space, "D": gen.info.D,
        "ppl_paper": ppl_paper,
        "ppl_free": metrics.continuous_ppl(first, reals, sigma, delta),
        "ppl_free_box": metrics.box_ppl(first, reals, sigma, delta),
        "ppl_sigma": sigma, "ppl_delta": delta,
        "mse": metrics.mse(first, reals),
        "diversity": metrics.diversity(flat, seed=seed),
        "diversity_real": metrics.diversity(reals, seed=seed),
        "multimodality": metrics.multimodality(gens, seed=seed),
        "multimodality_real": metrics.multimodality(list(by_text.values()), seed=seed),
        "variation": metrics.variation(flat),
        "variation_real": metrics.variation(reals),
        "frechet": metrics.frechet_distance(np.concatenate(flat) / scale, np.concatenate(reals) / scale),
        "frechet_normalized": fd_normalized,
        "lengths": metrics.length_stats([np.mean([len(x) for x in g]) for g in gens], [len(r) for r in reals]),
        "seconds": {"generate": round(t_gen, 3), "ppl_paper": round(t_ppl, 4)},
        "generated_frames_per_s": round(sum(len(x) for x in flat) / max(t_gen, 1e-9), 1),
    }
    if out_json:
        write_json(out_json, res)
    if generations_out:
        write_generations(generations_out, texts, gens, [s.sample_id for s in samples], gen.info.fps)
    return res


TABLE_ROWS = [("ppl_paper", "PPL, paper protocol (teacher-forced, prior z)"),
              ("ppl_free", "PPL, free-running sample"), ("ppl_free_box", "PPL, free-running, true ±δ box"),
              ("mse", "MSE"), ("diversity", "diversity"), ("diversity_real", "diversity (real)"),
              ("multimodality", "multimodality"), ("multimodality_real", "multimodality (real, repeated texts)"),
              ("variation", "variation"), ("variation_real", "variation (real)"), ("frechet", "Fréchet distance")]


def table_rows(res: dict) -> list[tuple[str, str]]:
    rows = [(label, f"{res[k]:.4f}") for k, label in TABLE_ROWS]
    rows.append(("PPL σ / δ", f"{res['ppl_sigma']:g} / {res['ppl_delta']:g} ({res['code_space']})"))
    L = res["lengths"]
    rows.append(("length gen mean / median", f"{L['gen_mean']:.1f} / {L['gen_median']:.0f}"))
    rows.append(("length real mean / median", f"{L['real_mean']:.1f} / {L['real_median']:.0f}"))
    if "mean_abs_error" in L:
        rows.append(("length mean abs error", f"{L['mean_abs_error']:.1f}"))
    return rows
