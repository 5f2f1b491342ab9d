"""Read a built dataset folder (docs/ARCHITECTURE.md "Dataset folder") for the model stage.

Parquet (data/{train,validation,test}.parquet, read through pipeline.formats.dataset) is preferred (no
unpickling). The EmoAva stage-1 pickles are read only when there are no Parquet files, after their SHA-256 is checked against `SHA256SUMS` when that file exists, and
through an unpickler that admits nothing but lists, strings and numpy arrays."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.codespaces import CODE_SPACES
from pipeline.formats import FormatError
from pipeline.formats.dataset import SPLITS, STAT_FILES, read_train_stat
from pipeline.formats.release import SUMS, read_sums, restricted_load



class DatasetError(ValueError):
    pass


@dataclass
class Sample:
    sample_id: str
    text: str
    codes: np.ndarray  # (T, D) float32, raw code values


@dataclass
class DatasetInfo:
    root: Path
    name: str
    code_space: str
    D: int
    dims: list[str]
    jaw_dims: list[int]
    fps: float
    counts: dict
    mean: np.ndarray
    std: np.ndarray
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"root": str(self.root), "name": self.name, "code_space": self.code_space, "D": self.D,
                "dims": list(self.dims), "jaw_dims": list(self.jaw_dims), "fps": self.fps,
                "counts": self.counts, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        return cls(Path(d["root"]), d["name"], d["code_space"], int(d["D"]), list(d["dims"]),
                   [int(j) for j in d["jaw_dims"]], float(d["fps"]), dict(d["counts"]),
                   np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def default_jaw_dims(code_space: str, dims: list[str]) -> list[int]:
    """Jaw columns of a dataset.json without `jaw_dims` (older datasets): the registry's, by name."""
    return CODE_SPACES[code_space].jaw_indices(dims) if code_space in CODE_SPACES else []


def load_info(root: str | Path) -> DatasetInfo:
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise DatasetError(f"{meta_path}: missing; is {root} a built dataset folder?")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: not valid JSON: {e}") from None
    for key in ("code_space", "D"):
        if key not in meta:
            raise DatasetError(f"{meta_path}: field {key!r} is missing")
    D = meta["D"]
    if not isinstance(D, int) or D < 1:
        raise DatasetError(f"{meta_path}: field 'D' must be a positive integer, got {D!r}")
    dims = list(meta.get("dims") or [f"c{i}" for i in range(D)])
    if len(dims) != D:
        raise DatasetError(f"{meta_path}: field 'dims' has {len(dims)} names but D = {D}")
    jaw = meta.get("jaw_dims")
    jaw = default_jaw_dims(meta["code_space"], dims) if jaw is None else [int(j) for j in jaw]
    if any(j < 0 or j >= D for j in jaw):
        raise DatasetError(f"{meta_path}: field 'jaw_dims' has indices outside [0, {D}): {jaw}")
    fps = float(meta.get("fps") or 25.0)
    mean_p, std_p = (root / n for n in STAT_FILES)
    if mean_p.exists() and std_p.exists():
        try:
            mean, std = (read_train_stat(root, n, D).astype(np.float32) for n in STAT_FILES)
        except FormatError as e:
            raise DatasetError(str(e)) from None
    else:  # statistics of the train frames, as the assembler defines them
        train = load_split(root, "train", D=D)
        if not train:
            raise DatasetError(f"{mean_p}: missing and the train split is empty")
        frames = np.concatenate([s.codes for s in train])
        mean, std = frames.mean(0).astype(np.float32), frames.std(0).astype(np.float32)
    return DatasetInfo(root, str(meta.get("name", root.name)), str(meta["code_space"]), D, dims, jaw, fps,
                       dict(meta.get("counts") or {}), mean, std, extra=meta)


# ---------------------------------------------------------------- reading samples

def _checked_bytes(path: Path) -> bytes:
    """The file's bytes, checked against the dataset's SHA256SUMS when it has one (a release)."""
    data = path.read_bytes()
    if (path.parent / SUMS).exists():
        sums, problems = read_sums(path.parent)
        want = sums.get(path.name)
        if want is None:
            raise DatasetError(f"{path.parent / SUMS}: no checksum listed for {path.name}"
                               + (f" ({problems[0]})" if problems else ""))
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise DatasetError(f"{path}: SHA-256 {got[:16]}… does not match {path.parent / SUMS} ({want[:16]}…)")
    return data


def _load_pickle(path: Path):
    return restricted_load(io.BytesIO(_checked_bytes(path)), what=f"stage-1 pickle {path}")


def load_split(root: str | Path, split: str, D: int | None = None) -> list[Sample]:
    """All samples of one split, in the dataset's order, codes as (T, D) float32."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r}: choose from {', '.join(SPLITS)}")
    root = Path(root)
    from pipeline.formats.dataset import parquet_paths, read_table

    try:
        has_parquet = bool(parquet_paths(root))
    except FileNotFoundError:
        has_parquet = False
    out: list[Sample] = []
    if has_parquet:
        try:
            df = read_table(root, [split])
        except ValueError as e:
            raise DatasetError(str(e)) from None
        for col in ("split", "text", "codes"):
            if col not in df.columns:
                raise DatasetError(f"{root}: Parquet column {col!r} is missing")
        for i, row in enumerate(df[[c for c in ("sample_id", "text", "codes") if c in df.columns]]
                                .itertuples(index=False)):
            codes = np.asarray([np.asarray(r, np.float32) for r in row.codes], np.float32)
            sid = getattr(row, "sample_id", None) or f"{split}-{i}"
            out.append(Sample(str(sid), str(row.text), codes))
    else:
        tp, ep = root / f"{split}_stage1_text.pkl", root / f"{split}_stage1_exps.pkl"
        if not tp.exists() or not ep.exists():
            raise DatasetError(f"{root}: neither Parquet splits (data/*.parquet) nor {tp.name}/{ep.name} exist")
        texts, exps = _load_pickle(tp), _load_pickle(ep)
        if not isinstance(texts, list) or not isinstance(exps, list) or len(texts) != len(exps):
            raise DatasetError(f"{tp} / {ep}: expected two lists of equal length")
        out = [Sample(f"{split}-{i}", str(t), np.asarray(e, np.float32)) for i, (t, e) in enumerate(zip(texts, exps))]
    for s in out:
        if s.codes.ndim != 2 or (D is not None and s.codes.shape[1] != D) or len(s.codes) == 0:
            raise DatasetError(f"{root}: sample {s.sample_id} ({split}) has codes of shape {s.codes.shape}, "
                               f"expected (T>0, {D})")
    return out


# ---------------------------------------------------------------- normalisation and batching

class Normalizer:
    """(x - mean) / std when enabled; identity otherwise (the reference trains on raw values)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, enabled: bool = True):
        self.enabled = enabled
        self.mean = np.asarray(mean, np.float32)
        self.std = np.where(np.asarray(std, np.float32) > 1e-6, std, 1.0).astype(np.float32)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32) if self.enabled else np.asarray(x, np.float32)

    def decode(self, x: np.ndarray) -> np.ndarray:
        return (x * self.std + self.mean).astype(np.float32) if self.enabled else np.asarray(x, np.float32)

    def bos(self) -> np.ndarray:
        """EmoAva's BOS is the mean frame: zeros in normalised space."""
        return np.zeros_like(self.mean) if self.enabled else self.mean.copy()


def collate(codes: list[np.ndarray], states: list[np.ndarray], max_frames: int):
    """Pad a batch: codes (B, T, D), frame mask (B, T), text (B, L, H), text mask (B, L)."""
    import torch

    B = len(codes)
    T = min(max(len(c) for c in codes), max_frames)
    D = codes[0].shape[1]
    L = max(len(s) for s in states)
    H = states[0].shape[1]
    x = torch.zeros(B, T, D)
    m = torch.zeros(B, T, dtype=torch.bool)
    txt = torch.zeros(B, L, H)
    tm = torch.zeros(B, L, dtype=torch.bool)
    for i, (c, s) in enumerate(zip(codes, states)):
        n = min(len(c), T)
        x[i, :n] = torch.from_numpy(np.ascontiguousarray(c[:n]))
        m[i, :n] = True
        txt[i, :len(s)] = torch.from_numpy(np.asarray(s, np.float32))
        tm[i, :len(s)] = True
    return x, m, txt, tm
