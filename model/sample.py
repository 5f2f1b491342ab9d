"""Sample expression sequences from a trained CTEG checkpoint (one text or a whole split), and the
teacher-forced prior-path predictions that EmoAva's perplexity protocol scores."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.cteg import CTEG
from model.data import DatasetInfo, Normalizer, collate
from model.text import TextEncoder, TextStateCache
from model.train import build_model, load_checkpoint, pick_device


def row_seed(seed: int, text: str, k: int) -> int:
    """The random stream of generation k of a text: a function of (seed, text, k) only, so adding or
    removing other texts, or batching differently, never changes a text's samples."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{k}\x1f{text}".encode("utf-8")).digest()[:8], "little") >> 1


@dataclass
class Generator:
    model: CTEG
    info: DatasetInfo
    norm: Normalizer
    cache: TextStateCache
    device: torch.device
    max_frames: int
    ck: dict

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | None = None, text_cache: str | None = None) -> "Generator":
        dev = pick_device(device)
        ck = load_checkpoint(checkpoint, dev)
        info = DatasetInfo.from_dict(ck["dataset"])
        norm = Normalizer(info.mean, info.std, ck["normalize"])
        cfg = ck["config"]
        enc = TextEncoder(ck["text_encoder"], cfg["max_text_tokens"], device=str(dev))
        if enc.id != ck["encoder_id"]:
            raise ValueError(f"{checkpoint}: trained with text encoder {ck['encoder_id']}, "
                             f"but model.text_encoder now resolves to {enc.id}")
        if text_cache or cfg["text_cache"]:
            root = Path(text_cache or cfg["text_cache"])
        elif info.root.is_absolute() and info.root.exists():  # reuse the states cached while training
            root = info.root / ".cache" / "text-states"
        else:
            root = Path(checkpoint).resolve().parent / ".text-states"
        model = build_model(ck["arch"], info, norm, ck["text_dim"]).to(dev)
        model.load_state_dict(ck["model"])
        model.eval()
        return cls(model, info, norm, TextStateCache(root, enc), dev, int(ck["resolved"]["max_frames"]), ck)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def sample(self, texts: list[str], n: int = 1, seed: int = 0, temperature: float = 1.0,
               min_frames: int = 1, max_frames: int | None = None, batch_size: int = 64,
               stop: str | None = None) -> list[list[np.ndarray]]:
        """n sequences per text, raw code values (T_i, D) float32. Generation k of a text uses its own
        random stream (`row_seed`): the same seed repeats, other texts in the call change nothing."""
        stop = stop or self.ck["config"].get("stop", "length")
        states = self.cache.get(list(texts))
        rows = [(i, k) for i in range(len(texts)) for k in range(n)]
        out: list[list[np.ndarray]] = [[None] * n for _ in texts]
        for s in range(0, len(rows), batch_size):
            chunk = rows[s:s + batch_size]
            D = self.info.D
            _, _, txt, tm = collate([np.zeros((1, D), np.float32)] * len(chunk), [states[i] for i, _ in chunk], 1)
            gens = [torch.Generator().manual_seed(row_seed(seed, texts[i], k)) for i, k in chunk]
            with self._autocast():
                seqs = self.model.generate(txt.to(self.device), tm.to(self.device), max_frames or self.max_frames,
                                           min_frames=min_frames, temperature=temperature, generator=gens, stop=stop)
            for (i, k), y in zip(chunk, seqs):
                out[i][k] = self.norm.decode(y.cpu().numpy())
        return out

    @torch.no_grad()
    def teacher_forced(self, texts: list[str], reals: list[np.ndarray], seed: int = 0,
                       batch_size: int = 32) -> list[np.ndarray]:
        """EmoAva's `infer_mode p`: each real sequence fed in, latents from the prior. Returns per text
        (T_i + 1, D) raw predictions: of y_1 .. y_T and of the frame after the last (the EOS position)."""
        states = self.cache.get(list(texts))
        out = []
        torch.manual_seed(seed)
        for s in range(0, len(texts), batch_size):
            idx = range(s, min(s + batch_size, len(texts)))
            x, m, txt, tm = collate([self.norm.encode(reals[i]) for i in idx], [states[i] for i in idx], self.max_frames)
            with self._autocast():
                o = self.model(x.to(self.device), m.to(self.device), txt.to(self.device), tm.to(self.device),
                               use_prior=True)
            pred = o["pred"].float().cpu().numpy()
            for j, i in enumerate(idx):
                T = min(len(reals[i]), self.max_frames)
                out.append(self.norm.decode(pred[j, :T + 1]))
        return out


def write_generations(path: str | Path, texts: list[str], gens: list[list[np.ndarray]], ids: list[str] | None = None,
                      fps: float = 25.0) -> Path:
    """Parquet: one row per generated sequence (sample_id, text, k, n_frames, fps, codes)."""
    import pandas as pd

    from pipeline.atomic import write_parquet

    rows = []
    for i, (t, gl) in enumerate(zip(texts, gens)):
        for k, y in enumerate(gl):
            rows.append({"sample_id": ids[i] if ids else f"text-{i}", "text": t, "k": k, "n_frames": len(y),
                         "fps": fps, "codes": [r.astype(np.float32).tolist() for r in y]})
    return write_parquet(path, pd.DataFrame(rows))


def read_generations(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    df = pq.read_table(path).to_pandas()
    return [{"sample_id": r.sample_id, "text": r.text, "k": int(r.k),
             "codes": np.asarray([np.asarray(f, np.float32) for f in r.codes], np.float32)}
            for r in df.itertuples(index=False)]
