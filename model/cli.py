"""`wordsmile train | evaluate | render` and `wordsmile sample CHECKPOINT --text ...` (the model stage).

Command bodies import torch/transformers lazily so `wordsmile --help` stays fast."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.codespaces import CODE_SPACES


def _fail(msg: str, code: int = 2):
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file, or a model folder written by `wordsmile train` (its best.pt, else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        _fail(f"{path}: a folder without best.pt or last.pt; give a checkpoint written by `wordsmile train`")
    if not path.exists():
        _fail(f"checkpoint {path} does not exist; give best.pt (or the model folder) written by `wordsmile train`")
    return path


def model_config(config: str = "small", sets: list[str] = (), **explicit):
    """ModelConfig from a preset name or a YAML file, then `--set` overrides, then explicit options."""
    from pipeline.config import ConfigError, load_config
    from pipeline.config.model import ModelConfig

    overrides = [s if s.startswith("model.") else f"model.{s}" for s in sets]
    try:
        if config.endswith((".yaml", ".yml")) or Path(config).is_file():
            cfg = load_config(config, overrides).model
        else:
            cfg = load_config(None, [f"model.preset={config}", *overrides]).model
        upd = {k: v for k, v in explicit.items() if v is not None}
        return ModelConfig.model_validate({**cfg.model_dump(), **upd}) if upd else cfg
    except (ConfigError, ValueError) as e:
        _fail(str(e))


def _print_table(title: str, rows):
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


def generate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `wordsmile train` (best.pt or last.pt, or "
                                                "the model folder: its best.pt)."),
    text: List[str] = typer.Option([], "--text", "-t", help="Text to express (repeatable)."),
    n: int = typer.Option(5, "-n", "--num", help="Sequences per text (each draws new latents and its own length)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same seed gives the same sequences."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the sequences as Parquet (sample_id, text, k, codes)."),
    split: Optional[str] = typer.Option(None, "--split", help="Batch mode: sample every text of this split (train/dev/test)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Dataset folder for --split (default: the one trained on)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Scale of the prior noise; 0 = prior mean."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Cap on generated length (default: training cap)."),
    min_frames: int = typer.Option(4, "--min-frames", help="The learned stop may not fire before this many frames."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
):
    """Sample N expression sequences per text from a trained CTEG model (incremental decoding)."""
    from model.data import load_split
    from model.sample import Generator, write_generations

    if not text and not split:
        _fail("give --text TEXT (repeatable) or --split SPLIT")
    checkpoint = checkpoint_path(checkpoint)
    try:
        gen = Generator.load(checkpoint, device)
    except (FileNotFoundError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
        _fail(f"{checkpoint}: {e}")
    ids = None
    texts = list(text)
    if split:
        samples = load_split(dataset or gen.info.root, split, D=gen.info.D)
        texts += [s.text for s in samples]
        ids = [f"text-{i}" for i in range(len(text))] + [s.sample_id for s in samples]
    gens = gen.sample(texts, n=n, seed=seed, temperature=temperature, min_frames=min_frames, max_frames=max_frames)
    for t, gl in list(zip(texts, gens))[:20]:
        lens = ", ".join(str(len(g)) for g in gl)
        typer.echo(f"{t[:60]!r}: {len(gl)} sequences, frames [{lens}] at {gen.info.fps:g} fps")
    if len(texts) > 20:
        typer.echo(f"... {len(texts) - 20} more texts")
    if out:
        write_generations(out, texts, gens, ids, gen.info.fps)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("sample", help="Sample N expression sequences per text from a trained checkpoint "
                               "(`wordsmile sample CHECKPOINT --text ... -n 5`).")(generate)

    @app.command("train")
    def train_cmd(
        dataset: Path = typer.Argument(..., help="Built dataset folder (dataset.json + data/*.parquet or EmoAva pickles)."),
        config: str = typer.Option("small", "--config", "-c", help="Preset (small: CPU minutes; paper: EmoAva's "
                                   "d_model 768 run) or a YAML config file whose `model:` section is used."),
        set_: List[str] = typer.Option([], "--set", "-s", help="Override a model setting: field=value (repeatable), "
                                       "e.g. normalize=false, text_encoder=/path/bert-base-cased."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default models/DATASET-PRESET)."),
        minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after this many minutes of training."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the train split (default: preset)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed (default: model.seed)."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/last.pt when it exists."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    ):
        """Train the CTEG text-to-expression model on a built dataset (checkpoints, log.csv, TensorBoard in OUT)."""
        from model.data import DatasetError
        from model.train import train

        cfg = model_config(config, set_, time_limit_s=minutes * 60 if minutes else None, max_steps=max_steps,
                           epochs=epochs, seed=seed)
        out = out or Path("models") / f"{Path(dataset).resolve().name}-{cfg.preset}"
        if not resume and (out / "last.pt").exists():
            typer.echo(f"--no-resume: starting over; {out}/last.pt will be replaced")
        typer.echo(f"logs: {out / 'log.csv'} (every {cfg.log_every} steps); TensorBoard: "
                   f"tensorboard --logdir {out / 'tb'}")
        try:
            res = train(dataset, out, cfg, device=device, resume=resume)
        except (DatasetError, FileNotFoundError, ValueError) as e:
            _fail(str(e))
        except pickle.UnpicklingError as e:
            _fail(f"{dataset}: a stage-1 pickle was refused ({e}): only lists of str and float arrays are read; "
                  f"rebuild the dataset or train from its Parquet files (data/*.parquet)")
        typer.echo(json.dumps(res, indent=2))

    @app.command("evaluate")
    def evaluate_cmd(
        checkpoint: Path = typer.Argument(..., help="Checkpoint written by `wordsmile train` (or its model folder)."),
        dataset: Optional[Path] = typer.Option(None, "--dataset", help="Dataset folder (default: the one trained on)."),
        split: str = typer.Option("test", "--split", help="Split to evaluate (train/dev/test)."),
        n: Optional[int] = typer.Option(None, "-n", "--num", help="Generations per text (default model.eval_samples = 5)."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed."),
        max_texts: Optional[int] = typer.Option(None, "--max-texts", help="Evaluate only the first N texts "
                                                "(default model.eval_max_texts; 0 = all)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Metrics JSON (default: beside the checkpoint)."),
        generations: Optional[Path] = typer.Option(None, "--generations", help="Also write the generations as Parquet."),
        set_: List[str] = typer.Option([], "--set", "-s", help="Override a model setting (ppl_sigma, ppl_delta, ...)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    ):
        """PPL by EmoAva's protocol (teacher-forced, prior z) and free-running, diversity, multimodality, variation,
        Fréchet, MSE, lengths."""
        from model.evaluate import evaluate, table_rows

        cfg = model_config("small", set_)
        n = n or cfg.eval_samples
        max_texts = cfg.eval_max_texts if max_texts is None else max_texts
        checkpoint = checkpoint_path(checkpoint)
        out = out or checkpoint.parent / f"eval-{split}.json"
        try:
            res = evaluate(checkpoint, dataset, split, n, seed, max_texts, cfg.temperature, cfg.min_frames,
                           cfg.ppl_sigma, cfg.ppl_delta, cfg.fd_normalized, out, generations, device, cfg.stop)
        except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
            _fail(str(e))
        _print_table(f"{checkpoint} on {split} ({res['texts']} texts × {n})", table_rows(res))
        typer.echo(f"wrote {out}")

    @app.command("render")
    def render_cmd(
        checkpoint: Path = typer.Argument(..., help="Checkpoint written by `wordsmile train` (or its model folder)."),
        text: Optional[str] = typer.Option(None, "--text", "-t", help="Render a generation for this text."),
        split: str = typer.Option("test", "--split", help="Without --text: take the real sample from this split."),
        index: int = typer.Option(0, "--index", help="Without --text: which sample of the split (side by side with real)."),
        out: Path = typer.Option(Path("render.mp4"), "--out", "-o", help="mp4 to write."),
        curves: Optional[Path] = typer.Option(None, "--curves", help="Also write a PNG of code curves over time."),
        dims: List[str] = typer.Option([], "--dim", help="Code dims for --curves, by name or index (repeatable; "
                                       "default: the code space's visibly moving dims, e.g. jawOpen and the smiles)."),
        flame: Optional[Path] = typer.Option(None, "--flame", help="FLAME 2020 generic_model.pkl (flame53 datasets)."),
        rig: Optional[Path] = typer.Option(None, "--rig", help="Linear rig (arkit52; default DATASET/rig.npz)."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed."),
        size: Optional[int] = typer.Option(None, "--size", help="Panel height and width in pixels "
                                           "(default model.render_size = 384)."),
        set_: List[str] = typer.Option([], "--set", "-s", help="Override a model setting (temperature, min_frames, ...)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    ):
        """Render a generated sequence (side by side with the real one for a dataset sample) as an mp4 with a caption."""
        import numpy as np

        from model.data import load_split
        from model.render import codes_to_mesh, face_frames, plot_curves, real_clip_of, render_video
        from model.sample import Generator

        checkpoint = checkpoint_path(checkpoint)
        try:
            gen = Generator.load(checkpoint, device)
        except (FileNotFoundError, ValueError, RuntimeError, pickle.UnpicklingError) as e:
            _fail(f"{checkpoint}: {e}")
        info = gen.info
        idx = []
        for d in dims:   # checked before any work: an unknown name fails at once
            if d.isdigit() and int(d) < info.D:
                idx.append(int(d))
            elif d in info.dims:
                idx.append(info.dims.index(d))
            else:
                _fail(f"--dim {d!r}: not a dim of {info.code_space}; use an index 0-{info.D - 1} or one of: "
                      f"{', '.join(info.dims)}")
        real = None
        if text is None:
            samples = load_split(info.root, split, D=info.D)
            if not 0 <= index < len(samples):
                _fail(f"--index {index}: split {split!r} of {info.root} has {len(samples)} samples")
            text, real = samples[index].text, samples[index].codes
            sample_id = samples[index].sample_id
        cfg = model_config("small", set_)
        size = size or cfg.render_size
        g = gen.sample([text], n=1, seed=seed, temperature=cfg.temperature, min_frames=cfg.min_frames,
                       stop=cfg.stop)[0][0]
        seqs = {"generated": g} if real is None else {"real": real, "generated": g}
        try:
            verts, tris, y_up, z_t = codes_to_mesh(list(seqs.values()), info.code_space, info.root, flame, rig)
        except (FileNotFoundError, ValueError, ImportError) as e:
            _fail(str(e))
        panels = list(zip(seqs.keys(), verts))
        clip = real_clip_of(info.root, sample_id) if real is not None else None
        if clip is not None:   # the real face the codes came from, first (dataset in its workspace)
            row, track = clip
            faces = face_frames(row["video_path"], float(row["start"]), float(row["end"]), info.fps,
                                track["t"], track["box"], size, n=len(real))
            if len(faces):
                panels.insert(0, ("real clip", faces))
        elif real is not None:
            typer.echo("(no real-clip panel: the dataset's workspace no longer holds this sample's media)")
        render_video(panels, tris, out, info.fps, text, size, y_up, z_t)
        typer.echo(f"wrote {out} ({max(len(v) for v in verts)} frames at {info.fps:g} fps)")
        if curves:
            if not idx:   # the dims that move visibly (jawOpen, smiles, ...: the code space's preview dims)
                space = CODE_SPACES.get(info.code_space)
                idx = [info.dims.index(n) for n in (space.preview_dims if space else ()) if n in info.dims]
            if not idx:
                var = np.var(g, 0)
                var[info.jaw_dims] = -1
                idx = list(info.jaw_dims[:2]) + [int(i) for i in np.argsort(var)[::-1][:3]]
            plot_curves(seqs, idx, info.dims, info.fps, curves, text)
            typer.echo(f"wrote {curves}")
