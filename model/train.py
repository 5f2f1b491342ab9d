"""Train CTEG on a built dataset: Noam schedule, KL free bits and annealing, gradient clipping,
bf16 autocast or fp16 + GradScaler on CUDA, a DataLoader with workers and pinned memory, dev
evaluation choosing `best.pt` on the prior path's reconstruction, resume from the last checkpoint
(refused when the dataset, normalisation, text encoder or schedule changed), progress bar, CSV and
TensorBoard logs, seeds. Data order is a function of (seed, epoch), so a resumed run continues exactly."""
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
from model.cteg import CTEG, CTEGConfig, cteg_loss, loss_weights
from model.data import DatasetError, DatasetInfo, Normalizer, collate, load_info, load_split
from pipeline.formats.dataset import content_hash
from model.text import TextEncoder, TextStateCache
from pipeline.atomic import atomic_path, write_text
from pipeline.config.model import ModelConfig

CKPT_VERSION = 2
# what a resumed run must share with the checkpoint (besides the architecture)
SCHEDULE_KEYS = ("epochs", "batch_size", "lr_mul", "warmup_steps", "max_frames")
LOSS_KEYS = ("seed", "jaw_weight", "kl_weight", "kl_free_bits", "kl_anneal_steps", "prior_weight", "stop_weight",
             "length_weight")


def noam_lr(step: int, d_model: int, warmup: int, lr_mul: float) -> float:
    step = max(step, 1)
    return lr_mul * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def kl_anneal(step: int, steps: int) -> float:
    """KL weight factor: linear from 0 to 1 over the first `steps` optimiser steps (0 = always 1)."""
    return 1.0 if steps <= 0 else min(1.0, step / steps)


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(cfg: ModelConfig, device: torch.device):
    """None (fp32) on CPU or with amp off; bf16 or fp16 on CUDA."""
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.float16 if cfg.amp_dtype == "fp16" else torch.bfloat16


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


def dim_weights(info: DatasetInfo, norm: Normalizer, jaw_weight: float) -> torch.Tensor:
    """The reference's raw-unit weighting carried into the space the model trains in (cteg.loss_weights)."""
    if not norm.enabled:
        return loss_weights(info.D, info.jaw_dims, jaw_weight)
    exp = [i for i in range(info.D) if i not in set(info.jaw_dims)] or list(range(info.D))
    return loss_weights(info.D, info.jaw_dims, jaw_weight, norm.std / float(np.mean(norm.std[exp])))


@dataclass
class Prepared:
    info: DatasetInfo
    norm: Normalizer
    cache: TextStateCache
    train: list
    dev: list
    data_hash: str


def prepare(dataset: str | Path, cfg: ModelConfig, device: torch.device, progress: bool = True) -> Prepared:
    dataset = Path(dataset).resolve()  # recorded absolute: a checkpoint used from another folder finds it
    info = load_info(dataset)
    norm = Normalizer(info.mean, info.std, cfg.normalize)
    enc = TextEncoder(cfg.text_encoder, cfg.max_text_tokens, device=str(device))
    cache_dir = Path(cfg.text_cache).resolve() if cfg.text_cache else dataset / ".cache" / "text-states"
    cache = TextStateCache(cache_dir, enc)
    train = load_split(dataset, "train", D=info.D)
    dev = load_split(dataset, "dev", D=info.D)
    if not train:
        raise ValueError(f"{Path(dataset) / 'data/train.parquet'}: the train split is empty")
    _refuse_non_finite(dataset, info, train, dev)
    cache.get([s.text for s in train + dev], progress=progress)
    return Prepared(info, norm, cache, [(s.text, norm.encode(s.codes)) for s in train],
                    [(s.text, norm.encode(s.codes)) for s in dev], content_hash(dataset))


def _refuse_non_finite(dataset, info: DatasetInfo, train: list, dev: list) -> None:
    """NaN/inf anywhere in the codes or statistics makes every loss NaN: refuse before the first step."""
    for name, a in (("stage1_mean.npy", info.mean), ("stage1_std.npy", info.std)):
        if a is not None and not np.isfinite(a).all():
            raise DatasetError(f"{Path(dataset) / name}: NaN or infinite values; rebuild the dataset")
    for split, samples in (("train", train), ("dev", dev)):
        for s in samples:
            if not np.isfinite(s.codes).all():
                raise DatasetError(f"{dataset}: sample {s.sample_id} ({split}) has NaN or infinite codes; "
                                   f"training on it would give a NaN model: rebuild the dataset")


def batches(data: list, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = np.random.default_rng([seed, epoch]).permutation(len(data))
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class Collate:
    """Batch builder for the DataLoader (module level, so worker processes can receive it)."""

    def __init__(self, data, cache: TextStateCache, max_frames: int):
        self.data, self.cache, self.max_frames = data, cache, max_frames

    def __call__(self, idx):
        texts = [self.data[i][0] for i in idx]
        x, m, txt, tm = collate([self.data[i][1] for i in idx], self.cache.get(texts), self.max_frames)
        ends = torch.tensor([len(self.data[i][1]) <= self.max_frames for i in idx])
        return x, m, txt, tm, ends


def loader(data, plan: list[list[int]], cache, max_frames: int, device: torch.device, workers: int):
    """Batches of `plan` in order; workers build them while the device trains, into pinned memory on CUDA."""
    if workers < 0:  # auto: the CPU cores are busy training on a CPU run
        workers = 2 if device.type == "cuda" else 0
    # its own generator: a DataLoader iterator draws a base seed, which must not come from (and shift)
    # the global stream that dropout and the latents use, or a resumed run would diverge
    return torch.utils.data.DataLoader(plan, batch_size=None, collate_fn=Collate(data, cache, max_frames),
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       generator=torch.Generator().manual_seed(0))


def to_device(batch, device):
    return tuple(t.to(device, non_blocking=True) for t in batch)


def dev_sample_figure(tb, model, prep: Prepared, p: dict, device, step: int) -> None:
    """A generated sequence of the first dev text next to the real one, as curves of the code space's
    visibly moving dims, in TensorBoard (`dev/sample`): what the model does, not just its loss."""
    if not prep.dev:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from pipeline.codespaces import CODE_SPACES

    info = prep.info
    space = CODE_SPACES.get(info.code_space)
    dims = [info.dims.index(n) for n in (space.preview_dims if space else ()) if n in info.dims] or [0]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x, m, txt, tm, _ = to_device(next(iter(loader(prep.dev, [[0]], prep.cache, p["max_frames"], device, 0))),
                                     device)
        g = torch.Generator(device=device).manual_seed(0)
        gen = model.generate(txt, tm, p["max_frames"], generator=g)[0].cpu().numpy()
    model.train(was_training)
    real = x[0, : int(m[0].sum())].float().cpu().numpy()
    real, gen = prep.norm.decode(real), prep.norm.decode(gen)
    fig = Figure(figsize=(7, 1.6 * len(dims) + 0.5))
    axes = fig.subplots(len(dims), 1, sharex=True, squeeze=False)[:, 0]
    for ax, d in zip(axes, dims):
        ax.plot(np.arange(len(real)) / info.fps, real[:, d], label="real", lw=1.2)
        ax.plot(np.arange(len(gen)) / info.fps, gen[:, d], label="generated", lw=1.2)
        ax.set_ylabel(info.dims[d], fontsize=8)
    axes[0].legend(fontsize=7)
    axes[0].set_title(prep.dev[0][0][:80], fontsize=8)
    axes[-1].set_xlabel("seconds")
    tb.add_figure("dev/sample", fig, step)


def evaluate_dev(model, prep: Prepared, p: dict, cfg: ModelConfig, device, weights) -> dict:
    """Dev losses with seeded noise (a reproducible best choice). `recon_prior` is the main head's
    reconstruction with latents from the prior, as at sampling time: the model-selection criterion
    (the posterior path's `recon` has seen the target)."""
    if not prep.dev:
        return {}
    model.eval()
    dt = autocast_dtype(cfg, device)
    state = torch.get_rng_state()
    torch.manual_seed(cfg.seed + 1)
    cuda_state = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    if cuda_state is not None:
        torch.cuda.manual_seed_all(cfg.seed + 1)
    sums, n = {}, 0
    plan = [list(range(i, min(i + p["batch_size"], len(prep.dev)))) for i in range(0, len(prep.dev), p["batch_size"])]
    with torch.no_grad():
        for batch in loader(prep.dev, plan, prep.cache, p["max_frames"], device, 0):
            x, m, txt, tm, ends = to_device(batch, device)
            with torch.autocast(device.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
                out = model(x, m, txt, tm)
                out_p = model(x, m, txt, tm, use_prior=True)
            _, parts = cteg_loss(out, x, m, weights, cfg.kl_weight, cfg.prior_weight, cfg.stop_weight,
                                 cfg.length_weight, cfg.kl_free_bits, ends)
            T = x.shape[1]
            wt = weights.to(device)
            d = (((out_p["pred"][:, :T].float() - x) * wt) ** 2).sum(-1).clamp_min(1e-12).sqrt()
            parts["recon_prior"] = (d * m).sum() / m.sum().clamp_min(1)
            w = int(m.sum())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * w
            n += w
    torch.set_rng_state(state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)
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


LOG_FIELDS = ["step", "epoch", "time_s", "lr", "kl_factor", "loss", "recon", "kl", "active", "prior", "stop", "length",
              "dev_loss", "dev_recon", "dev_recon_prior", "dev_kl", "dev_active", "dev_prior", "dev_stop", "dev_length"]


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _check_resume(ck: dict, meta: dict, path: Path) -> None:
    """Refuse to continue a run whose data, normalisation, text encoder, architecture or schedule changed."""
    checks = [("arch", ck["arch"], meta["arch"]), ("dataset D", ck["dataset"]["D"], meta["dataset"]["D"]),
              ("dataset content hash", ck["dataset_hash"], meta["dataset_hash"]),
              ("normalize", ck["normalize"], meta["normalize"]), ("text encoder", ck["encoder_id"], meta["encoder_id"])]
    checks += [(f"schedule {k}", ck["resolved"].get(k), meta["resolved"].get(k)) for k in SCHEDULE_KEYS]
    checks += [(f"model.{k}", ck["config"].get(k), meta["config"].get(k)) for k in LOSS_KEYS]
    for name, old, new in checks:
        if old != new:
            raise ValueError(f"{path}: field {name!r} was {old!r} and is now {new!r}; resuming would mix two runs "
                             f"(use another --out or --no-resume)")


def train(dataset: str | Path, out_dir: str | Path, cfg: ModelConfig | None = None, device: str | None = None,
          resume: bool = True, progress: bool = True, tensorboard: bool = True) -> dict:
    """Train until the epochs, `cfg.max_steps` or `cfg.time_limit_s` run out. Writes `last.pt`,
    `best.pt` (lowest dev reconstruction on the prior path; the last one when there is no dev split),
    `log.csv`, `tb/`. Returns a summary dict (steps, epochs, best, paths, speed)."""
    cfg = cfg or ModelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(cfg.threads)
    dt = autocast_dtype(cfg, dev)
    p = presets.resolve(cfg)
    prep = prepare(dataset, cfg, dev, progress)
    seed_all(cfg.seed)
    model = build_model(p, prep.info, prep.norm, prep.cache.encoder.dim).to(dev)
    weights = dim_weights(prep.info, prep.norm, cfg.jaw_weight).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9, foreach=True)
    scaler = torch.amp.GradScaler("cuda", enabled=dt == torch.float16)
    step, epoch, pos, best, history = 0, 0, 0, float("inf"), []
    last_path, best_path = out / "last.pt", out / "best.pt"
    meta = {"version": CKPT_VERSION, "arch": {k: p[k] for k in presets.ARCH_KEYS}, "preset": cfg.preset,
            "resolved": p, "config": cfg.model_dump(mode="json"), "dataset": prep.info.to_dict(),
            "dataset_hash": prep.data_hash, "normalize": cfg.normalize, "text_encoder": cfg.text_encoder,
            "encoder_id": prep.cache.encoder.id, "text_dim": prep.cache.encoder.dim,
            "params": sum(q.numel() for q in model.parameters())}
    if resume and last_path.exists():
        ck = load_checkpoint(last_path, dev)
        _check_resume(ck, meta, last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if "scaler" in ck and scaler.is_enabled():
            scaler.load_state_dict(ck["scaler"])
        step, epoch, pos, best = ck["step"], ck["epoch"], ck["pos"], ck["best"]
        history = ck["history"]
        _set_rng_state(ck["rng"])

    def checkpoint(path):
        save_checkpoint(path, {**meta, "model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scaler": scaler.state_dict(), "step": step, "epoch": epoch, "pos": pos,
                               "best": best, "history": history, "rng": _rng_state()})

    tb = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        tb = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)

    n_batches = len(batches(prep.train, p["batch_size"], cfg.seed, 0))
    total_steps = p["epochs"] * n_batches
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    t0 = time.time()
    steps_here = 0
    frames_here = torch.zeros((), device=dev, dtype=torch.long)
    acc: dict[str, torch.Tensor] = {}
    n_acc = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.preset} on {Path(dataset).name}", unit="step",
                   dynamic_ncols=True, mininterval=1.0)
    model.train()
    stop_reason = "epochs"

    def log_row(extra_dev: dict):
        nonlocal n_acc
        row = {"step": step, "epoch": epoch, "time_s": round(time.time() - t0, 2),
               "lr": noam_lr(step, p["d_model"], p["warmup_steps"], p["lr_mul"]),
               "kl_factor": kl_anneal(step, cfg.kl_anneal_steps)}
        row.update({k: float(v) / max(n_acc, 1) for k, v in acc.items()})  # the only host sync: once per log
        row.update({f"dev_{k}": v for k, v in extra_dev.items()})
        acc.clear()
        n_acc = 0
        history.append(row)
        if tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch", "time_s"):
                    tb.add_scalar(k.replace("dev_", "dev/") if k.startswith("dev_") else f"train/{k}", v, step)
            tb.flush()
        _write_csv(out / "log.csv", history)
        if bar is not None and "recon" in row:
            bar.set_postfix(loss=f"{row['loss']:.3f}", recon=f"{row['recon']:.3f}", kl=f"{row['kl']:.3f}", ep=epoch)
        return row

    def better(d):
        return d and d.get("recon_prior", float("inf")) < best

    while epoch < p["epochs"] and step < total_steps:
        plan = batches(prep.train, p["batch_size"], cfg.seed, epoch)
        for batch in loader(prep.train, plan[pos:], prep.cache, p["max_frames"], dev, cfg.workers):
            if step >= total_steps:
                break
            if cfg.time_limit_s and time.time() - t0 >= cfg.time_limit_s:
                stop_reason = "time limit"
                break
            x, m, txt, tm, ends = to_device(batch, dev)
            lr = noam_lr(step + 1, p["d_model"], p["warmup_steps"], p["lr_mul"])
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            with torch.autocast(dev.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
                outp = model(x, m, txt, tm)
            loss, parts = cteg_loss(outp, x, m, weights, cfg.kl_weight * kl_anneal(step, cfg.kl_anneal_steps),
                                    cfg.prior_weight, cfg.stop_weight, cfg.length_weight, cfg.kl_free_bits, ends)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
            scaler.step(opt)
            scaler.update()
            step += 1
            pos += 1
            steps_here += 1
            frames_here += m.sum()
            for k, v in parts.items():
                acc[k] = acc[k] + v if k in acc else v.float()
            n_acc += 1
            if bar is not None:
                bar.update(1)
            if step % cfg.eval_every == 0:
                d = evaluate_dev(model, prep, p, cfg, dev, weights)
                log_row(d)
                if tb is not None:
                    dev_sample_figure(tb, model, prep, p, dev, step)
                if better(d):
                    best = d["recon_prior"]
                    checkpoint(best_path)
                checkpoint(last_path)
            elif step % cfg.log_every == 0:
                log_row({})
        else:
            epoch += 1
            pos = 0
            continue
        break
    if step >= total_steps and stop_reason == "epochs" and cfg.max_steps and step == cfg.max_steps:
        stop_reason = "max steps"
    if bar is not None:
        bar.close()
    d = evaluate_dev(model, prep, p, cfg, dev, weights)
    if acc or not history or history[-1]["step"] != step:
        log_row(d)
    if better(d) or not best_path.exists():
        best = d.get("recon_prior", best)
        checkpoint(best_path)
    checkpoint(last_path)
    if tb is not None:
        dev_sample_figure(tb, model, prep, p, dev, step)
        hp = {k: v for k, v in {**p, "preset": cfg.preset, "latent": cfg.latent, "kl_free_bits": cfg.kl_free_bits,
                                "kl_anneal_steps": cfg.kl_anneal_steps, "jaw_weight": cfg.jaw_weight}.items()
              if isinstance(v, (int, float, str, bool))}
        tb.add_hparams(hp, {"hparam/dev_recon_prior": float(best)}, run_name=".")
        tb.close()
    wall = time.time() - t0
    last = history[-1] if history else {}
    return {"steps": step, "epoch": epoch, "stop_reason": stop_reason, "best_dev_recon_prior": best,
            "dev_kl": last.get("dev_kl"), "dev_active_dims": last.get("dev_active"), "params": meta["params"],
            "last": str(last_path), "best": str(best_path), "log": str(out / "log.csv"),
            "seconds": round(wall, 2), "steps_per_s": round(steps_here / wall, 2) if wall else 0.0,
            "frames_per_s": round(int(frames_here) / wall, 1) if wall else 0.0,
            "text_cache": {"hits": prep.cache.hits, "misses": prep.cache.misses}}
