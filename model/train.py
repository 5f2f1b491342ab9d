"""Train CTEG on a built dataset: Noam schedule, gradient clipping, bf16 autocast on CUDA, dev
evaluation with a best checkpoint, resume from the last checkpoint, progress bar, CSV and TensorBoard
logs, seeds. Data order is a function of (seed, epoch), so a resumed run continues exactly."""
from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model import presets
from model.cteg import CTEG, CTEGConfig, cteg_loss
from model.data import DatasetInfo, Normalizer, collate, load_info, load_split
from model.text import TextEncoder, TextStateCache
from pipeline.atomic import atomic_path, write_text
from pipeline.config.model import ModelConfig

CKPT_VERSION = 1


def noam_lr(step: int, d_model: int, warmup: int, lr_mul: float) -> float:
    step = max(step, 1)
    return lr_mul * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save into a temporary file beside `path`, renamed on success (never a torn checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # weights_only: a checkpoint holds tensors, numbers, strings, lists and dicts only
    ck = torch.load(path, map_location=device, weights_only=True)
    if ck.get("version") != CKPT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ck.get('version')!r}, this code reads {CKPT_VERSION}")
    return ck


def build_model(ck_or_arch: dict, info: DatasetInfo, norm: Normalizer, text_dim: int) -> CTEG:
    arch = {k: ck_or_arch[k] for k in presets.ARCH_KEYS}
    cfg = CTEGConfig(D=info.D, text_dim=text_dim, jaw_dims=list(info.jaw_dims), **arch)
    return CTEG(cfg, norm.bos())


@dataclass
class Prepared:
    info: DatasetInfo
    norm: Normalizer
    cache: TextStateCache
    train: list
    dev: list


def prepare(dataset: str | Path, cfg: ModelConfig, device: torch.device, progress: bool = True) -> Prepared:
    info = load_info(dataset)
    norm = Normalizer(info.mean, info.std, cfg.normalize)
    enc = TextEncoder(cfg.text_encoder, cfg.max_text_tokens, device=str(device))
    cache_dir = Path(cfg.text_cache) if cfg.text_cache else Path(dataset) / ".cache" / "text-states"
    cache = TextStateCache(cache_dir, enc)
    train = load_split(dataset, "train", D=info.D)
    dev = load_split(dataset, "dev", D=info.D)
    if not train:
        raise ValueError(f"{Path(dataset) / 'data/train.parquet'}: the train split is empty")
    cache.get([s.text for s in train + dev], progress=progress)
    return Prepared(info, norm, cache, [(s.text, norm.encode(s.codes)) for s in train],
                    [(s.text, norm.encode(s.codes)) for s in dev])


def batches(data: list, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = np.random.default_rng([seed, epoch]).permutation(len(data))
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def make_batch(data, idx, cache: TextStateCache, max_frames: int, device):
    """Padded batch on `device` + which sequences end inside the frame cap (the others get no stop label)."""
    texts = [data[i][0] for i in idx]
    x, m, txt, tm = collate([data[i][1] for i in idx], cache.get(texts), max_frames)
    ends = torch.tensor([len(data[i][1]) <= max_frames for i in idx])
    return x.to(device), m.to(device), txt.to(device), tm.to(device), ends.to(device)


def evaluate_dev(model, prep: Prepared, p: dict, cfg: ModelConfig, device, amp) -> dict:
    """Dev losses with fixed noise (seeded), so the best-checkpoint choice is reproducible."""
    if not prep.dev:
        return {}
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    sums, n = {}, 0
    with torch.no_grad():
        for i in range(0, len(prep.dev), p["batch_size"]):
            idx = list(range(i, min(i + p["batch_size"], len(prep.dev))))
            x, m, txt, tm, ends = make_batch(prep.dev, idx, prep.cache, p["max_frames"], device)
            shape = (x.shape[0], x.shape[1], model.cfg.d_latent)
            noise = (torch.randn(shape, generator=g).to(device), torch.randn(shape, generator=g).to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, m, txt, tm, noise=noise)
            _, parts = cteg_loss(out, x, m, prep.info.jaw_dims, cfg.jaw_weight, cfg.kl_weight,
                                 cfg.prior_weight, cfg.stop_weight, ends)
            w = int(m.sum())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * w
            n += w
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": repr(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _np_state():
    s = np.random.get_state()
    return [s[0], torch.from_numpy(s[1].astype(np.int64)), s[2], s[3], s[4]]


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"].cpu())  # map_location may have moved it; RNG states live on the CPU
    s = st["numpy"]
    np.random.set_state((s[0], s[1].cpu().numpy().astype(np.uint32), s[2], s[3], s[4]))
    import ast
    random.setstate(ast.literal_eval(st["python"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([c.cpu() for c in st["cuda"]])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


LOG_FIELDS = ["step", "epoch", "time_s", "lr", "loss", "recon", "kl", "prior", "stop",
              "dev_loss", "dev_recon", "dev_kl", "dev_prior", "dev_stop"]


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def train(dataset: str | Path, out_dir: str | Path, cfg: ModelConfig | None = None, device: str | None = None,
          resume: bool = True, progress: bool = True, tensorboard: bool = True) -> dict:
    """Train until the epochs, `cfg.max_steps` or `cfg.time_limit_s` run out. Writes `last.pt`,
    `best.pt` (lowest dev loss; the last one when there is no dev split), `log.csv`, `tb/`.
    Returns a summary dict (steps, epochs, best dev loss, paths, speed)."""
    cfg = cfg or ModelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(cfg.threads)
    amp = cfg.amp and dev.type == "cuda"
    p = presets.resolve(cfg)
    prep = prepare(dataset, cfg, dev, progress)
    seed_all(cfg.seed)
    model = build_model(p, prep.info, prep.norm, prep.cache.encoder.dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9, foreach=True)
    step, epoch, pos, best, history = 0, 0, 0, float("inf"), []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.exists():
        ck = load_checkpoint(last_path, dev)
        arch = {k: p[k] for k in presets.ARCH_KEYS}
        if ck["arch"] != arch or ck["dataset"]["D"] != prep.info.D:
            raise ValueError(f"{last_path}: field 'arch' {ck['arch']} (D={ck['dataset']['D']}) differs from this run's "
                             f"{arch} (D={prep.info.D}); use another --out or --no-resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, pos, best = ck["step"], ck["epoch"], ck["pos"], ck["best"]
        history = ck["history"]
        _set_rng_state(ck["rng"])

    meta = {"version": CKPT_VERSION, "arch": {k: p[k] for k in presets.ARCH_KEYS}, "preset": cfg.preset,
            "resolved": p, "config": cfg.model_dump(mode="json"), "dataset": prep.info.to_dict(),
            "normalize": cfg.normalize, "text_encoder": cfg.text_encoder, "encoder_id": prep.cache.encoder.id,
            "text_dim": prep.cache.encoder.dim}

    def checkpoint(path):
        save_checkpoint(path, {**meta, "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "step": step, "epoch": epoch, "pos": pos, "best": best,
                               "history": history, "rng": _rng_state()})

    tb = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        tb = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)

    n_batches = len(batches(prep.train, p["batch_size"], cfg.seed, 0))
    total_steps = p["epochs"] * n_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    t0 = time.time()
    steps_here, frames_here = 0, 0
    acc: dict[str, float] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
    model.train()
    stop_reason = "epochs"

    def log_row(extra_dev: dict):
        row = {"step": step, "epoch": epoch, "time_s": round(time.time() - t0, 2),
               "lr": noam_lr(step, p["d_model"], p["warmup_steps"], p["lr_mul"])}
        n = max(acc.pop("_n", 1), 1)
        row.update({k: v / n for k, v in acc.items()})
        row.update({f"dev_{k}": v for k, v in extra_dev.items()})
        acc.clear()
        history.append(row)
        if tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch", "time_s"):
                    tb.add_scalar(k.replace("dev_", "dev/") if k.startswith("dev_") else f"train/{k}", v, step)
            tb.flush()
        _write_csv(out / "log.csv", history)
        return row

    while epoch < p["epochs"] and step < total_steps:
        plan = batches(prep.train, p["batch_size"], cfg.seed, epoch)
        while pos < len(plan):
            if step >= total_steps:
                break
            if cfg.time_limit_s and time.time() - t0 >= cfg.time_limit_s:
                stop_reason = "time limit"
                break
            x, m, txt, tm, ends = make_batch(prep.train, plan[pos], prep.cache, p["max_frames"], dev)
            lr = noam_lr(step + 1, p["d_model"], p["warmup_steps"], p["lr_mul"])
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                outp = model(x, m, txt, tm)
            loss, parts = cteg_loss(outp, x, m, prep.info.jaw_dims, cfg.jaw_weight, cfg.kl_weight,
                                    cfg.prior_weight, cfg.stop_weight, ends)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            pos += 1
            steps_here += 1
            frames_here += int(m.sum())
            for k, v in parts.items():
                acc[k] = acc.get(k, 0.0) + v
            acc["_n"] = acc.get("_n", 0) + 1
            if bar is not None:
                bar.set_postfix(loss=f"{parts['loss']:.3f}", recon=f"{parts['recon']:.3f}", ep=epoch, refresh=False)
                bar.update(1)
            if step % cfg.eval_every == 0:
                d = evaluate_dev(model, prep, p, cfg, dev, amp)
                log_row(d)
                if d and d["loss"] < best:
                    best = d["loss"]
                    checkpoint(best_path)
                checkpoint(last_path)
        else:
            epoch += 1
            pos = 0
            continue
        break
    if step >= total_steps and stop_reason == "epochs" and cfg.max_steps and step == cfg.max_steps:
        stop_reason = "max steps"
    if bar is not None:
        bar.close()
    d = evaluate_dev(model, prep, p, cfg, dev, amp)
    if acc or not history or history[-1]["step"] != step:
        log_row(d)
    if (d and d["loss"] < best) or not best_path.exists():
        best = d.get("loss", best)
        checkpoint(best_path)
    checkpoint(last_path)
    if tb is not None:
        tb.close()
    wall = time.time() - t0
    return {"steps": step, "epoch": epoch, "stop_reason": stop_reason, "best_dev_loss": best,
            "last": str(last_path), "best": str(best_path), "log": str(out / "log.csv"),
            "seconds": round(wall, 2), "steps_per_s": round(steps_here / wall, 2) if wall else 0.0,
            "frames_per_s": round(frames_here / wall, 1) if wall else 0.0,
            "text_cache": {"hits": prep.cache.hits, "misses": prep.cache.misses}}
