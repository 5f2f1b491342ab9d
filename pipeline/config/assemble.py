"""Assembly, filter and release settings (pipeline/assemble/, pipeline/release.py)."""
from __future__ import annotations

from pipeline.config._base import F, Section


class AssembleConfig(Section):
    min_frames: int = F(8, "shorter sequences carry too little motion to learn from")
    max_frames: int = F(253, "EmoAva's trainer pads to 256 = BOS + 253 + EOS and silently truncates longer")
    split_ratios: list[float] = F([0.8, 0.1, 0.1], "train/dev/test by source video when a source has no split")
    std_floor: float = F(1e-4, "floor for stage1_std so constant dims do not divide by zero")
