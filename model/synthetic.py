"""A synthetic two-mode dataset: does the latent carry information?

Each text has its own level, direction and motion; each of its clips follows one of two modes, the
level plus or minus the direction (a "smile or frown" for the same words). A model whose samples
depend on the text alone averages the modes or locks onto one; a model with a working latent draws
both. The folder is the assembled dataset format (samples.parquet, dataset.json, train statistics)
plus `modes.json`, which lets `mode_of` label a generated sequence."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ("I you we really never always happy sad angry what why no yes great terrible love hate this that "
         "so tonight again maybe sorry thanks wait listen look").split()


def make_two_mode(root: str | Path, n_texts: int = 8, per_text: int = 6, D: int = 6, gap: float = 1.5,
                  noise: float = 0.05, seed: int = 0, lengths=(20, 50)) -> Path:
    """Write the set to `root`. Clip lengths are per text (± 10%), so a length head can learn them.
    Train holds `per_text` clips per text (half in each mode); dev and test two each (one per mode)."""
    import pandas as pd

    from pipeline.atomic import write_parquet

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texts, modes, rows = [], {}, []
    while len(texts) < n_texts:
        t = " ".join(rng.choice(WORDS, int(rng.integers(3, 8)))).capitalize() + "."
        if t not in texts:
            texts.append(t)
    for i, t in enumerate(texts):
        level = rng.normal(0, 0.3, D)
        direction = rng.normal(0, 1, D)
        direction *= gap / np.linalg.norm(direction) * np.sqrt(D) / 2  # the modes lie ~gap·√D apart
        period, phase = rng.uniform(8, 20), rng.uniform(0, 2 * np.pi)
        T0 = int(rng.integers(*lengths))
        modes[t] = {"level": level.tolist(), "direction": direction.tolist(), "frames": T0}
        for split, count in (("train", per_text), ("dev", 2), ("test", 2)):
            for k in range(count):
                sign = 1.0 if k % 2 == 0 else -1.0
                T = max(4, int(round(T0 * rng.uniform(0.9, 1.1))))
                tt = np.arange(T)[:, None]
                wave = 0.3 * np.sin(2 * np.pi * tt / period + phase + np.arange(D)[None])
                codes = level + sign * direction + wave + noise * rng.standard_normal((T, D))
                rows.append({"sample_id": f"{split}-{i}-{k}", "split": split, "text": t,
                             "codes": [list(map(float, r)) for r in codes.astype(np.float32)],
                             "n_frames": T, "fps": 25.0, "code_space": "arkit52"})
    df = pd.DataFrame(rows)
    write_parquet(root / "samples.parquet", df)
    train = np.concatenate([np.asarray(c, np.float32) for c in df[df.split == "train"].codes])
    np.save(root / "stage1_mean.npy", train.mean(0).astype(np.float32))
    np.save(root / "stage1_std.npy", train.std(0).astype(np.float32))
    dims = [f"b{i}" for i in range(D - 2)] + ["jawOpen", "jawLeft"]
    (root / "dataset.json").write_text(json.dumps({
        "name": root.name, "code_space": "synthetic", "D": D, "dims": dims, "jaw_dims": [D - 2, D - 1],
        "fps": 25.0, "counts": df.split.value_counts().to_dict()}))
    (root / "modes.json").write_text(json.dumps(modes))
    return root


def load_modes(root: str | Path) -> dict:
    return json.loads((Path(root) / "modes.json").read_text())


def mode_of(seq: np.ndarray, m: dict) -> int:
    """+1 or −1: the side of the text's level that the sequence's mean frame lies on."""
    d = np.asarray(m["direction"])
    return 1 if float((np.asarray(seq).mean(0) - np.asarray(m["level"])) @ d) >= 0 else -1


def both_modes(gens_per_text: list[list[np.ndarray]], texts: list[str], modes: dict) -> int:
    """How many texts have generations in both modes."""
    return sum(len({mode_of(g, modes[t]) for g in gl}) == 2 for t, gl in zip(texts, gens_per_text))
