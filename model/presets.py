"""Architecture and schedule presets for CTEG.

`paper` is EmoAva's run (1 decoder layer, d_model 768, 12 heads, FFN 2048, batch 256, Noam with
lr_mul 2 and 4,000 warm-up steps, 100 epochs). `small` is sized for the 2-core CPU demo
(measured: 2 layers of width 128 at batch 8 × 32 frames is ≈ 13 ms a step on one CPU core)."""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(d_model=128, n_layers=2, n_heads=4, d_ff=256, d_latent=16, d_att=32, dropout=0.1,
                  batch_size=8, lr_mul=0.2, warmup_steps=200, epochs=200, max_frames=128),
    "paper": dict(d_model=768, n_layers=1, n_heads=12, d_ff=2048, d_latent=64, d_att=64, dropout=0.1,
                  batch_size=256, lr_mul=2.0, warmup_steps=4000, epochs=100, max_frames=253),
}

ARCH_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "d_latent", "d_att", "dropout")


def resolve(cfg) -> dict[str, Any]:
    """The preset named by `cfg.preset` with the config's explicit overrides applied."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {cfg.preset!r} (choose from {', '.join(PRESETS)})")
    p = dict(PRESETS[cfg.preset])
    for k in ("epochs", "batch_size", "lr_mul", "warmup_steps"):
        v = getattr(cfg, k)
        if v is not None:
            p[k] = v
    # the config's max_frames caps the preset's (EmoAva's 253 is the format's ceiling)
    p["max_frames"] = min(p["max_frames"], cfg.max_frames)
    return p
